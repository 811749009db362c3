defmodule Crier.HTTP.SemanticsTest do
  @moduledoc """
  The parts of RFC 9110 that shape HTTP/1.1 framing, in the order of its sections: HEAD,
  Expect: 100-continue, interim responses, and statuses without a body. Raw bytes over
  `:gen_tcp`; each rule is checked on the wire and by reusing the connection afterwards,
  which only works when no stray body byte was sent.
  """
  use Crier.Test.HttpCase, async: true

  @get "GET /after HTTP/1.1\r\nhost: a\r\n\r\n"

  describe "6.4.2 / 9.3.2 HEAD" do
    test "a HEAD response has the GET head and content-length but no body", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "HEAD /x HTTP/1.1\r\nhost: a\r\n\r\n" <> @get)
      assert {:ok, data} = RawClient.read_until(client, "GET /after")
      [head, rest] = :binary.split(data, "\r\n\r\n")
      assert head =~ "HTTP/1.1 200 OK"
      assert head =~ "content-length: 7"
      # The next bytes are the next response, not the HEAD body "HEAD /x".
      assert "HTTP/1.1 200 OK" <> _ = rest
    end

    test "a streamed response to HEAD sends the head alone", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "HEAD /stream HTTP/1.1\r\nhost: a\r\n\r\n" <> @get)
      assert {200, headers, ""} = read_head_response(client)
      assert header(headers, "transfer-encoding") == nil
      assert {200, _, "GET /after"} = read_response(client)
    end

    @tag handler_opts: [fun: &__MODULE__.sized/1]
    test "a sized response to HEAD sends the head alone", %{port: port} do
      client = RawClient.connect(port)

      :ok =
        :gen_tcp.send(
          client,
          "HEAD / HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\n\r\n"
        )

      assert {200, headers, ""} = read_head_response(client)
      assert header(headers, "content-length") == "6"
      assert {200, _, "abcdef"} = read_response(client)
    end

    @tag handler_opts: [fun: &__MODULE__.head_with_length/1]
    test "a HEAD response keeps the handler's content-length when it sends no body",
         %{port: port} do
      client = RawClient.connect(port)

      for path <- ["/10001", "/none"] do
        :ok = :gen_tcp.send(client, "HEAD #{path} HTTP/1.1\r\nhost: a\r\n\r\n")
        assert {200, headers, ""} = read_head_response(client)
        # The size of the GET response, which the handler knows and Crier does not.
        assert header(headers, "content-length") == if(path == "/none", do: nil, else: "10001")
      end

      # No body byte followed either head: the connection goes on.
      assert {200, _, "got it"} = request(client, "GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
    end
  end

  describe "10.1.1 Expect: 100-continue" do
    test "100 Continue is sent when the handler reads the body", %{port: port} do
      client = RawClient.connect(port)
      head = "POST /echo HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
      :ok = :gen_tcp.send(client, head)
      assert {:ok, "HTTP/1.1 100 Continue\r\n\r\n"} = RawClient.read_until(client, "\r\n\r\n")
      :ok = :gen_tcp.send(client, "hello")
      assert {200, headers, "hello"} = read_response(client)
      assert header(headers, "connection") == nil
      assert {200, _, "GET /after"} = request(client, @get)
    end

    test "no 100 Continue when the handler answers without reading; the connection closes",
         %{port: port} do
      head = "POST /x HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\n"
      assert {200, _, "POST /x"} = request_then_close(port, head)
    end

    test "a client that sends its body without waiting for 100 is served", %{port: port} do
      client = RawClient.connect(port)

      raw =
        "POST /echo HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\nhello"

      :ok = :gen_tcp.send(client, raw)
      # A 100 may come first (the handler may ask before the body is seen); then the 200.
      response = read_response(client)
      response = if elem(response, 0) == 100, do: read_response(client), else: response
      assert {200, _, "hello"} = response
      assert {200, _, "GET /after"} = request(client, @get)
    end

    test "an HTTP/1.0 client gets no 100 Continue", %{port: port} do
      client = RawClient.connect(port)
      raw = "POST /echo HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\nhello"
      :ok = :gen_tcp.send(client, raw)
      assert {:closed, data} = RawClient.read_to_close(client)
      assert "HTTP/1.0 200 OK\r\n" <> _ = data
      assert String.ends_with?(data, "\r\n\r\nhello")
    end
  end

  describe "15 status codes and reason phrases (RFC 9112 section 4)" do
    test "every registered status has its reason phrase, 418 included", %{port: port} do
      client = RawClient.connect(port)

      for {code, phrase} <- [
            {203, "Non-Authoritative Information"},
            {226, "IM Used"},
            {402, "Payment Required"},
            {416, "Range Not Satisfiable"},
            {418, "I'm a teapot"},
            {421, "Misdirected Request"},
            {425, "Too Early"},
            {451, "Unavailable For Legal Reasons"},
            {506, "Variant Also Negotiates"},
            {511, "Network Authentication Required"}
          ] do
        :ok = :gen_tcp.send(client, "GET /status/#{code} HTTP/1.1\r\nhost: a\r\n\r\n")
        {:ok, data} = RawClient.read_until(client, "\r\n\r\nbody")
        assert String.starts_with?(data, "HTTP/1.1 #{code} #{phrase}\r\n"), data
      end
    end

    @tag handler_opts: [fun: &__MODULE__.own_phrases/1]
    test "a {status, phrase} tuple writes that phrase in every head", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
      {:ok, data} = RawClient.read_until(client, "0\r\n\r\n")
      assert data =~ ~r/\AHTTP\/1\.1 103 Hints Ahead\r\n\r\nHTTP\/1\.1 299 Made Here\r\n/
      :ok = :gen_tcp.send(client, "GET /resp HTTP/1.1\r\nhost: a\r\n\r\n")
      {:ok, data} = RawClient.read_until(client, "\r\n\r\nx")
      assert String.starts_with?(data, "HTTP/1.1 799 Not An RFC Status\r\n")
    end

    @tag handler_opts: [fun: &__MODULE__.bad_phrases/2]
    test "a phrase with CR, LF or NUL raises ArgumentError and sends nothing", %{port: port} do
      client = RawClient.connect(port)
      assert {200, _, "after"} = request(client, "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
      assert_receive {:raised, [%ArgumentError{}, %ArgumentError{}, %ArgumentError{}]}
    end
  end

  describe "15.2 informational responses" do
    @tag handler_opts: [fun: &__MODULE__.early_hints/1]
    test "a 103 goes out before the final response", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
      assert {103, headers, ""} = read_head_response(client)
      assert header(headers, "link") == "</style.css>; rel=preload"
      assert {200, _, "final"} = read_response(client)
    end
  end

  describe "15.3.5 / 15.4.5 204 and 304" do
    test "204 and 304 carry neither a body nor content-length", %{port: port} do
      client = RawClient.connect(port)

      for status <- [204, 304] do
        :ok = :gen_tcp.send(client, "GET /status/#{status} HTTP/1.1\r\nhost: a\r\n\r\n")
        assert {^status, headers, ""} = read_head_response(client)
        assert header(headers, "content-length") == nil
        assert header(headers, "transfer-encoding") == nil
      end

      # The body "body" the handler gave was dropped, or this would not parse.
      assert {200, _, "GET /after"} = request(client, @get)
    end

    @tag handler_opts: [fun: &__MODULE__.chunked_204/1]
    test "a streamed 204 has no transfer-encoding and ends at once", %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "GET / HTTP/1.1\r\nhost: a\r\n\r\n" <> @get)
      assert {204, headers, ""} = read_head_response(client)
      assert header(headers, "transfer-encoding") == nil
      assert {204, _, ""} = read_head_response(client)
    end
  end

  describe "responses from send_resp" do
    @tag handler_opts: [fun: &__MODULE__.custom_headers/1]
    test "headers keep their case, content-length is the server's, date is added",
         %{port: port} do
      client = RawClient.connect(port)
      :ok = :gen_tcp.send(client, "GET / HTTP/1.1\r\nhost: a\r\n\r\n")
      assert {:ok, data} = RawClient.read_until(client, "\r\n\r\nhello world")
      assert data =~ "\r\nX-Custom-Case: Value\r\n"
      assert data =~ "\r\ncontent-length: 11\r\n"
      refute data =~ "999"
      [_, date] = Regex.run(~r/\r\ndate: ([^\r]+)\r\n/, data)

      assert date =~
               ~r/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/
    end
  end

  @doc false
  def head_with_length(%{path: "/10001"} = conn),
    do: Crier.Conn.send_resp(conn, 200, [{"Content-Length", "10001"}], "")

  def head_with_length(%{path: "/none"} = conn), do: Crier.Conn.send_resp(conn, 200, [], "")
  def head_with_length(conn), do: Crier.Conn.send_resp(conn, 200, [], "got it")

  @doc false
  def own_phrases(%{path: "/resp"} = conn),
    do: Crier.Conn.send_resp(conn, {799, "Not An RFC Status"}, [], "x")

  def own_phrases(conn) do
    :ok = Crier.Conn.inform(conn, {103, "Hints Ahead"}, [])
    Crier.Conn.send_chunked(conn, {299, "Made Here"}, [])
  end

  @doc false
  def bad_phrases(conn, test) do
    raised =
      for phrase <- ["a\rb", "a\nb", "a\0b"] do
        try do
          Crier.Conn.send_resp(conn, {200, phrase}, [], "")
        rescue
          error -> error
        end
      end

    send(test, {:raised, raised})
    Crier.Conn.send_resp(conn, 200, [], "after")
  end

  @doc false
  def sized(conn) do
    {:ok, conn} = Crier.Conn.send_head(conn, 200, [], 6)
    {:ok, conn} = Crier.Conn.chunk(conn, "abc")
    Crier.Conn.chunk(conn, "def")
  end

  @doc false
  def early_hints(conn) do
    :ok = Crier.Conn.inform(conn, 103, [{"link", "</style.css>; rel=preload"}])
    Crier.Conn.send_resp(conn, 200, [], "final")
  end

  @doc false
  def chunked_204(conn), do: Crier.Conn.send_chunked(conn, 204, [])

  @doc false
  def custom_headers(conn) do
    Crier.Conn.send_resp(
      conn,
      200,
      [{"X-Custom-Case", "Value"}, {"Content-Length", "999"}],
      ["hello", ?\s, ["wor" | "ld"]]
    )
  end
end
