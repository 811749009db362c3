defmodule Crier.HTTP.RFC9112Test do
  @moduledoc """
  HTTP/1.1 message syntax and connection management, one test per rule of RFC 9112, in the
  order of its sections. Each sends raw bytes over `:gen_tcp` and asserts the exact status;
  a refused request must never reach the handler.

  Rules that only refuse a request are tables of `{rule, status, requests}`: each row is a
  test named after its rule that sends every one of `requests` on a fresh connection and
  asserts `status`, a close and an untouched handler (`assert_refused/3`).
  """
  use Crier.Test.HttpCase, async: true

  @get "GET / HTTP/1.1\r\nhost: localhost\r\n\r\n"

  describe "2.2 message parsing" do
    for {rule, status, requests} <- [
          {"a bare CR in the request line is rejected with 400", 400,
           ["GET / HTTP/1.1\rhost: localhost\r\n\r\n"]},
          {"a bare CR inside a field value is rejected with 400", 400,
           ["GET / HTTP/1.1\r\nhost: localhost\r\nx: a\rb\r\n\r\n"]},
          {"a CR ending a field line without LF is rejected with 400", 400,
           ["GET / HTTP/1.1\r\nhost: localhost\rx: b\r\n\r\n"]},
          {"whitespace between the start-line and the first field is rejected with 400", 400,
           ["GET / HTTP/1.1\r\n host: localhost\r\n\r\n"]},
          {"a flood of empty lines before the request line is rejected with 400", 400,
           [String.duplicate("\r\n", 100)]}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end

    test "empty lines before the request line are ignored", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, "GET /"} = request(client, "\r\n\r\n" <> @get)
      assert_received {:handled, _, _}
    end

    test "a bare LF is accepted as a line terminator", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, "GET /lf"} = request(client, "GET /lf HTTP/1.1\nhost: localhost\n\n")
    end
  end

  describe "2.3 HTTP version" do
    for {rule, status, requests} <- [
          {"a well-formed version other than 1.0 and 1.1 gets 505", 505,
           for(
             version <- ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"],
             do: "GET / #{version}\r\nhost: localhost\r\n\r\n"
           )},
          {"the HTTP/2 connection preface gets 505", 505, ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]},
          {"a malformed version gets 400", 400,
           for(
             version <- ["HTTP/1.1x", "http/1.1", "HTTP/11", "FOO/1.1", "HTTP/1.1 extra"],
             do: "GET / #{version}\r\nhost: localhost\r\n\r\n"
           )},
          {"an HTTP/0.9 request line (no version) gets 400", 400, ["GET /\r\n\r\n"]}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end
  end

  describe "3 request line" do
    for {rule, status, requests} <- [
          {"more than one space between the parts is rejected with 400", 400,
           ["GET  / HTTP/1.1\r\nhost: localhost\r\n\r\n"]},
          {"a method that is not a token is rejected with 400", 400,
           ["G(T / HTTP/1.1\r\nhost: localhost\r\n\r\n"]},
          {"a request line over the default 8 KiB gets 414 before its end arrives", 414,
           ["GET /" <> String.duplicate("a", 9000)]}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end

    @tag server_opts: [max_request_line: 64]
    test "a request line of max_request_line bytes is accepted", %{port: port} do
      path = "/" <> String.duplicate("a", 64 - byte_size("GET / HTTP/1.1"))
      line = "GET #{path} HTTP/1.1"
      assert byte_size(line) == 64
      client = RawClient.connect(port)
      assert {200, _, "GET " <> ^path} = request(client, line <> "\r\nhost: localhost\r\n\r\n")
    end

    @tag server_opts: [max_request_line: 64]
    test "a request line one byte over max_request_line gets 414", context do
      path = "/" <> String.duplicate("a", 65 - byte_size("GET / HTTP/1.1"))
      assert_refused(context, 414, ["GET #{path} HTTP/1.1\r\nhost: localhost\r\n\r\n"])
    end
  end

  describe "3.2 request target" do
    for {rule, status, requests} <- [
          {"a target in none of the four forms is rejected with 400", 400,
           ["GET foo HTTP/1.1\r\nhost: localhost\r\n\r\n"]},
          {"an HTTP/1.1 request without Host is rejected with 400", 400,
           ["GET / HTTP/1.1\r\n\r\n"]},
          {"a Host that is not a host and port is rejected with 400", 400,
           for(
             host <- ["a b", "a/b", "user@a", "a?b"],
             do: "GET / HTTP/1.1\r\nhost: #{host}\r\n\r\n"
           )},
          {"a request with two Host fields is rejected with 400", 400,
           ["GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"]},
          {"a Host whose port is not 1*DIGIT up to 65535 is rejected with 400 (3.2, RFC 3986 3.2.3)",
           400,
           for(
             host <- ["banana:-1234", "banana:12a", "banana:65536", "a:b:c", "[::1]:x"],
             do: "GET / HTTP/1.1\r\nhost: #{host}\r\n\r\n"
           )},
          {"a Host that is not an IP literal or a reg-name is rejected with 400", 400,
           for(
             host <- ["[::1", "[::1]x", "[]", "a%zz", "a[b]"],
             do: "GET / HTTP/1.1\r\nhost: #{host}\r\n\r\n"
           )},
          {"3.2.2 an absolute-form target with userinfo or without a host is rejected with 400",
           400,
           for(
             target <- ["http://user@banana/", "http:///a", "http://banana:-1/", "http://a b/"],
             do: "GET #{target} HTTP/1.1\r\nhost: banana\r\n\r\n"
           )},
          {"3.2.4 the asterisk-form with a method other than OPTIONS is rejected with 400", 400,
           for(
             method <- ["GET", "HEAD", "POST", "options"],
             do: "#{method} * HTTP/1.1\r\nhost: localhost\r\n\r\n"
           )}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end

    test "a Host with a port, an IP literal or an empty port is accepted", %{port: port} do
      client = RawClient.connect(port)

      for host <- ["banana:1234", "[::1]:4000", "[fedc:ba98::3210]", "127.0.0.1:0", "banana:"] do
        assert {200, _, "GET /"} = request(client, "GET / HTTP/1.1\r\nhost: #{host}\r\n\r\n")
        assert_received {:handled, _, conn}
        assert Crier.Conn.get_req_header(conn, "host") == [host]
      end
    end

    test "an HTTP/1.0 request without Host is accepted (Host is required of HTTP/1.1 only)",
         %{port: port} do
      assert {200, _, "GET /"} = request_then_close(port, "GET / HTTP/1.0\r\n\r\n")
      assert_received {:handled, _, conn}
      assert Crier.Conn.get_req_header(conn, "host") == []
    end

    test "3.2.2 an absolute-form target is accepted and split into path and query",
         %{port: port} do
      client = RawClient.connect(port)

      for {target, path, query} <- [
            {"http://localhost/a/b?c=d", "/a/b", "c=d"},
            {"http://localhost", "/", ""},
            {"http://localhost?x=y#f", "/", "x=y"},
            {"HTTPS://localhost/s#f", "/s", ""}
          ] do
        raw = "GET #{target} HTTP/1.1\r\nhost: localhost\r\n\r\n"
        assert {200, _, "GET " <> ^path} = request(client, raw)
        assert_received {:handled, _, %{path: ^path, query: ^query}}
      end
    end

    test "3.2.2 an absolute-form target's authority replaces the Host field", %{port: port} do
      client = RawClient.connect(port)
      raw = "GET http://banana:1234/a?b=c HTTP/1.1\r\nhost: orange:2345\r\nx: y\r\n\r\n"
      assert {200, _, "GET /a"} = request(client, raw)
      assert_received {:handled, _, conn}
      assert conn.headers == [{"host", "banana:1234"}, {"x", "y"}]

      # HTTP/1.0 needs no Host: the target's authority becomes one.
      assert {200, _, "GET /"} = request(client, "GET http://[::1]:99/ HTTP/1.0\r\n\r\n")
      assert_received {:handled, _, conn}
      assert conn.headers == [{"host", "[::1]:99"}]
    end

    test "3.2.4 OPTIONS * is accepted, with the path \"*\"", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, "OPTIONS *"} = request(client, "OPTIONS * HTTP/1.1\r\nhost: a\r\n\r\n")
    end
  end

  describe "5 field syntax" do
    for {rule, status, requests} <- [
          {"5.1 whitespace between a field name and the colon is rejected with 400", 400,
           [
             "GET / HTTP/1.1\r\nhost : localhost\r\n\r\n",
             "GET / HTTP/1.1\r\nhost\t: localhost\r\n\r\n"
           ]},
          {"5.1 a field name with a separator is rejected with 400", 400,
           [
             "GET / HTTP/1.1\r\nhost: a\r\nx(y): 1\r\n\r\n",
             "GET / HTTP/1.1\r\nhost: a\r\n: empty\r\n\r\n"
           ]},
          {"5.1 a field value with NUL or DEL is rejected with 400", 400,
           [
             "GET / HTTP/1.1\r\nhost: a\r\nx: a\0b\r\n\r\n",
             "GET / HTTP/1.1\r\nhost: a\r\nx: a\x7Fb\r\n\r\n"
           ]},
          {"5.2 obs-fold (a continuation line) is rejected with 400", 400,
           [
             "GET / HTTP/1.1\r\nhost: a\r\nx: a\r\n folded\r\n\r\n",
             "GET / HTTP/1.1\r\nhost: a\r\nx: a\r\n\tfolded\r\n\r\n"
           ]},
          {"a header block over the default 16 KiB gets 431 before it ends", 431,
           ["GET / HTTP/1.1\r\nhost: a\r\nx: " <> String.duplicate("v", 20_000)]}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end

    test "field names are case-insensitive and reach the handler lowercased", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, _} = request(client, "GET / HTTP/1.1\r\nHOST: a\r\nX-Mixed-Case: V\r\n\r\n")
      assert_received {:handled, _, conn}
      assert Crier.Conn.get_req_header(conn, "x-mixed-case") == ["V"]
    end

    @tag server_opts: [max_header_bytes: 256]
    test "a header block of max_header_bytes is accepted", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, _} = request(client, head_with_block(256))
    end

    @tag server_opts: [max_header_bytes: 256]
    test "a header block one byte over max_header_bytes gets 431", context do
      assert_refused(context, 431, [head_with_block(257)])
    end

    @tag server_opts: [max_headers: 10]
    test "max_headers fields are accepted, one more gets 431", %{port: port, server: server} do
      client = RawClient.connect(port)
      assert {200, _, _} = request(client, head_with_fields(10))
      assert {431, _, _} = refused(port, head_with_fields(11))
      assert Crier.stats(server).requests == 1
    end

    test "more than the default 100 fields get 431", context do
      assert_refused(context, 431, [head_with_fields(101)])
    end
  end

  describe "6.1 transfer-encoding" do
    for {rule, status, requests} <- [
          {"Transfer-Encoding with Content-Length is rejected with 400 (smuggling)", 400,
           for(
             fields <- [
               "content-length: 5\r\ntransfer-encoding: chunked",
               "transfer-encoding: chunked\r\ncontent-length: 5",
               "Content-Length: 0\r\nTransfer-Encoding: CHUNKED"
             ],
             do: "POST / HTTP/1.1\r\nhost: a\r\n#{fields}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
           )},
          {"a transfer coding other than chunked gets 501", 501,
           for(
             coding <- ["gzip", "identity", "gzip, chunked", "xchunked"],
             do: "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: #{coding}\r\n\r\n"
           )},
          {"chunked that is not the final coding, or repeated, is rejected with 400", 400,
           for(
             fields <- [
               "transfer-encoding: chunked, gzip",
               "transfer-encoding: chunked\r\ntransfer-encoding: chunked",
               "transfer-encoding: chunked, chunked",
               "transfer-encoding: "
             ],
             do: "POST / HTTP/1.1\r\nhost: a\r\n#{fields}\r\n\r\n"
           )},
          {"Transfer-Encoding in an HTTP/1.0 request is rejected with 400", 400,
           ["POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"]}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end
  end

  describe "6.2 content-length" do
    for {rule, status, requests} <- [
          {"differing Content-Length values are rejected with 400", 400,
           for(
             fields <- ["content-length: 3\r\ncontent-length: 4", "content-length: 3, 4"],
             do: "POST / HTTP/1.1\r\nhost: a\r\n#{fields}\r\n\r\nabcd"
           )},
          {"a Content-Length that is not a decimal number is rejected with 400", 400,
           for(
             value <- ["+3", "-3", "0x3", "3a", "", "99999999999999999999", "3 3"],
             do: "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: #{value}\r\n\r\nabc"
           )}
        ] do
      test(rule, context, do: assert_refused(context, unquote(status), unquote(requests)))
    end

    test "equal Content-Length values count as one", %{port: port} do
      client = RawClient.connect(port)

      raw =
        "POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 3, 3\r\n\r\nabc"

      assert {200, _, "abc"} = request(client, raw)
    end

    @tag server_opts: [max_body: 100]
    test "a Content-Length over max_body gets 413 before the handler", context do
      raw = "POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 101\r\n\r\n"
      assert_refused(context, 413, [[raw, String.duplicate("x", 101)]])
    end

    @tag server_opts: [max_body: 100]
    test "a Content-Length of exactly max_body is read", %{port: port} do
      client = RawClient.connect(port)
      body = String.duplicate("x", 100)
      raw = "POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n" <> body
      assert {200, _, ^body} = request(client, raw)
    end

    test "the 413 answer survives a large unread body (no reset)", %{port: port, server: server} do
      # A reset caused by unread bytes would destroy the answer in flight (9.6).
      raw = "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 20000000\r\n\r\n"
      assert {413, _, "Content Too Large"} = refused(port, [raw, :binary.copy("x", 200_000)])
      assert_not_handled(server)
    end
  end

  describe "7 chunked transfer coding" do
    test "a chunked body is decoded, with extensions and trailers", %{port: port} do
      client = RawClient.connect(port)

      raw =
        "POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n" <>
          "5;name=value\r\nhello\r\n1;flag\r\n \r\n05\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n"

      assert {200, _, "hello world"} = request(client, raw)
      # The connection stays usable after a chunked body.
      assert {200, _, "GET /"} = request(client, @get)
    end

    # The head is valid, so these reach the handler; its read of the body fails.
    for {rule, bodies} <- [
          {"a chunk size that overflows 64 bits gets 400 and a close",
           ["10000000000000005\r\nhello\r\n0\r\n\r\n"]},
          {"junk after a chunk size gets 400 and a close",
           ["5x\r\nhello\r\n0\r\n\r\n", "5 \r\nhello\r\n0\r\n\r\n", "\r\n", "-5\r\n"]},
          {"chunk data not followed by CRLF gets 400 and a close", ["5\r\nhelloXX0\r\n\r\n"]},
          {"a chunk size line ended by a bare LF gets 400", ["5\nhello\r\n0\r\n\r\n"]}
        ] do
      test rule, %{port: port} do
        for body <- unquote(bodies) do
          assert {400, _, _} = refused(port, chunked_post("/echo", body))
        end
      end
    end

    @tag server_opts: [max_body: 100]
    test "a chunked body over max_body gets 413 and a close", %{port: port} do
      body =
        "40\r\n#{String.duplicate("x", 64)}\r\n40\r\n#{String.duplicate("y", 64)}\r\n0\r\n\r\n"

      assert {413, _, _} = refused(port, chunked_post("/echo", body))
    end

    @tag handler_opts: [fun: &__MODULE__.answer_on_go/1]
    test "a bad chunked body is answered with 400 even when the handler has not read it",
         %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, chunked_post("/", ""))
      assert_receive {:handled, handler, _}, 5_000
      :ok = :gen_tcp.send(client, "zz\r\n")
      assert {400, _, _} = read_response(client)
      assert_closed(client)
      # The handler's own answer comes too late: the exchange is over.
      send(handler, {:go, self()})
      assert_receive {:answered, {:error, :closed}}, 5_000
    end

    test "a bad chunked body after the response closes the connection", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, chunked_post("/", ""))
      assert {200, _, "POST /"} = read_response(client)
      :ok = :gen_tcp.send(client, "zz\r\n" <> @get)
      assert_closed(client)
    end
  end

  describe "9.3 persistence" do
    test "an HTTP/1.1 connection persists by default", %{port: port} do
      client = RawClient.connect(port)

      for path <- ["/a", "/b", "/c"] do
        raw = "GET #{path} HTTP/1.1\r\nhost: a\r\n\r\n"
        assert {200, headers, "GET " <> ^path} = request(client, raw)
        assert header(headers, "connection") == nil
      end
    end

    test "Connection: close in a request closes after the response", %{port: port} do
      raw = "GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
      assert {200, _, "GET /"} = request_then_close(port, raw)
    end

    test "HTTP/1.0 closes after the response unless keep-alive is asked", %{port: port} do
      assert {200, _, "GET /"} = request_then_close(port, "GET / HTTP/1.0\r\n\r\n")

      client = RawClient.connect(port)
      raw = "GET /1 HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"
      assert {200, headers, "GET /1"} = request(client, raw)
      # Without this an HTTP/1.0 client takes the connection as closing.
      assert header(headers, "connection") == "keep-alive"
      assert {200, _, "GET /2"} = request(client, "GET /2 HTTP/1.0\r\n\r\n")
      assert_closed(client)
    end

    @tag handler_opts: [fun: &__MODULE__.answer_and_close/1]
    test "Connection: close from the handler closes after the response", %{port: port} do
      assert {200, _, "bye"} = request_then_close(port, @get)
    end

    test "an HTTP/1.0 stream is delimited by the close, without chunked coding", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "GET /stream HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
      assert {:closed, data} = RawClient.read_to_close(client)
      {200, headers, body} = RawClient.parse_response(data)
      assert header(headers, "transfer-encoding") == nil
      assert header(headers, "content-length") == nil
      assert body == "ab"
    end

    # The deep one is about 60 KB of requests, past the head limits the server reads ahead.
    for {rule, count, prefix} <- [
          {"pipelined requests are answered in order", 20, "/p"},
          {"a pipeline deeper than the read buffer is answered in order", 1_000, "/deep"}
        ] do
      test rule, %{port: port} do
        client = RawClient.connect(port)
        paths = for i <- 1..unquote(count), do: unquote(prefix) <> "#{i}"
        :ok = :gen_tcp.send(client, for(p <- paths, do: "GET #{p} HTTP/1.1\r\nhost: a\r\n\r\n"))

        for path <- paths do
          assert {200, _, "GET " <> ^path} = read_response(client)
        end
      end
    end

    test "pipelined requests with bodies and a stream in between stay in order", %{port: port} do
      client = RawClient.connect(port)

      :ok =
        :gen_tcp.send(client, [
          "POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nfirst",
          chunked_post("/echo", "6\r\nsecond\r\n0\r\n\r\n"),
          "GET /stream HTTP/1.1\r\nhost: a\r\n\r\n",
          "GET /last HTTP/1.1\r\nhost: a\r\n\r\n"
        ])

      assert {200, _, "first"} = read_response(client)
      assert {200, _, "second"} = read_response(client)
      assert {200, _, "ab"} = read_response(client)
      assert {200, _, "GET /last"} = read_response(client)
    end

    test "a request after a refused pipelined one is never handled", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, ["GET /ok HTTP/1.1\r\nhost: a\r\n\r\n", "BAD\r\n\r\n", @get])
      assert {200, _, "GET /ok"} = read_response(client)
      assert {400, _, _} = read_response(client)
      assert_closed(client)
      assert_receive {:handled, _, %{path: "/ok"}}, 5_000
      refute_received {:handled, _, _}
    end
  end

  describe "9.3 unread request bodies" do
    test "a small body the handler never reads is skipped before the next request",
         %{port: port} do
      raw = "POST /ignored HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123456789"
      assert_skipped_before_next(port, raw)
    end

    test "a large body the handler never reads is drained before the next request",
         %{port: port} do
      body = :binary.copy("x", 500_000)
      head = "POST /ignored HTTP/1.1\r\nhost: a\r\ncontent-length: #{byte_size(body)}\r\n\r\n"
      assert_skipped_before_next(port, [head, body])
    end

    test "a chunked body the handler never reads is drained before the next request",
         %{port: port} do
      chunk = :binary.copy("y", 100_000)
      body = List.duplicate(["186A0\r\n", chunk, "\r\n"], 3) ++ ["0\r\n\r\n"]
      assert_skipped_before_next(port, chunked_post("/ignored", body))
    end

    test "a body too large to drain closes the connection after the response", %{port: port} do
      client = RawClient.connect(port)
      length = 6_000_000
      head = "POST /ignored HTTP/1.1\r\nhost: a\r\ncontent-length: #{length}\r\n\r\n"
      :ok = :gen_tcp.send(client, [head, :binary.copy("x", 300_000)])
      assert {200, _, "POST /ignored"} = read_response(client)
      # The rest of the body never comes; the server closes instead of waiting for it.
      assert {:closed, _} = RawClient.read_to_close(client)
    end
  end

  describe "9.5 failures and timeouts" do
    @tag server_opts: [header_timeout: 300]
    test "a head not complete before header_timeout gets 408", context do
      assert_refused(context, 408, ["GET / HTTP/1.1\r\nhost: a\r\n"])
    end

    @tag server_opts: [header_timeout: 500]
    test "the header deadline is absolute: a trickling client is cut with 408",
         %{port: port, server: server} do
      client = RawClient.connect(port)
      # One byte every 50 ms would take 1.5 s for this head; each byte is well inside any
      # per-read timeout, so only an absolute deadline stops it.
      head = "GET / HTTP/1.1\r\nhost: a\r\nx-long: abcdefghij\r\n\r\n"
      assert {:cut, sent, answer} = trickle(client, head, 50)
      assert sent < byte_size(head)
      assert {408, _, _} = RawClient.parse_response(answer)
      assert_not_handled(server)
    end

    @tag server_opts: [header_timeout: 200]
    test "a connection that sends nothing is closed quietly at the header deadline",
         %{port: port, server: server} do
      client = RawClient.connect(port)
      assert_closed(client)
      assert_not_handled(server)
    end

    @tag server_opts: [header_timeout: 300]
    test "a second request not complete before header_timeout gets 408", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, _} = request(client, @get)
      :ok = :gen_tcp.send(client, "GET /second HTTP/1.1\r\nhost: a\r\n")
      assert {408, _, _} = read_response(client)
      assert_closed(client)
    end

    @tag server_opts: [keepalive_timeout: 200]
    test "an idle keep-alive connection is closed quietly, without a 408", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, _} = request(client, @get)
      assert_closed(client)
    end
  end

  @doc false
  def answer_and_close(conn),
    do: Crier.Conn.send_resp(conn, 200, [{"Connection", "close"}], "bye")

  @doc false
  # A handler that answers 200 when the test says so and reports what send_resp returned.
  def answer_on_go(conn) do
    receive do
      {:go, test} -> send(test, {:answered, Crier.Conn.send_resp(conn, 200, [], "late")})
    end
  end

  # Sends `post` (to /ignored, whose handler answers without reading the body) and a GET
  # right behind it on one connection; both must be answered, in order.
  defp assert_skipped_before_next(port, post) do
    client = RawClient.connect(port)
    :ok = :gen_tcp.send(client, [post, @get])
    assert {200, _, "POST /ignored"} = read_response(client)
    assert {200, _, "GET /"} = read_response(client)
  end

  # A head whose field lines (with CRLFs) add up to exactly `size` bytes.
  defp head_with_block(size) do
    fixed = "host: a\r\nx: \r\n"

    "GET / HTTP/1.1\r\nhost: a\r\nx: " <>
      String.duplicate("v", size - byte_size(fixed)) <> "\r\n\r\n"
  end

  defp head_with_fields(count) do
    fields = for i <- 2..count//1, do: "x-#{i}: v\r\n"
    ["GET / HTTP/1.1\r\nhost: a\r\n", fields, "\r\n"]
  end

  defp chunked_post(path, body) do
    IO.iodata_to_binary([
      "POST #{path} HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
      body
    ])
  end

  # Sends `data` one byte every `every` ms until it is all sent or the server answers or
  # closes; returns `{:done, sent}` or `{:cut, sent, answer}` with everything the server sent.
  defp trickle(client, data, every, sent \\ 0)
  defp trickle(_client, "", _every, sent), do: {:done, sent}

  defp trickle(client, <<byte, rest::binary>>, every, sent) do
    with :ok <- :gen_tcp.send(client, <<byte>>),
         {:error, :timeout} <- :gen_tcp.recv(client, 0, every) do
      trickle(client, rest, every, sent + 1)
    else
      {:ok, data} ->
        {_, more} = RawClient.read_to_close(client)
        {:cut, sent + 1, data <> more}

      {:error, _} ->
        {:cut, sent, ""}
    end
  end
end
