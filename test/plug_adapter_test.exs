defmodule Crier.PlugAdapterTest do
  @moduledoc """
  Every `Plug.Conn.Adapter` callback, exercised without Plug: `Crier.PlugAdapter.Impl` holds
  their bodies and runs here in a live request process, while a raw TCP client checks the
  bytes on the wire and the test checks the return shapes the behaviour prescribes.
  """
  use ExUnit.Case, async: true

  alias Crier.PlugAdapter.Impl
  alias Crier.Test.{RawClient, Server, Wait}

  defmodule Runner do
    @moduledoc """
    A handler that runs the test's functions in the request process: it reports
    `{:request, pid, conn}`, then runs each `{:run, fun}` and replies `{:ran, pid, result}`
    with the `{:plug_conn, :sent}` messages the call left in the mailbox, until `:return`.
    """
    @behaviour Crier.Handler

    @impl Crier.Handler
    def call(conn, test) do
      send(test, {:request, self(), conn})
      loop(conn, test)
    end

    defp loop(conn, test) do
      receive do
        {:run, fun} ->
          result = fun.(conn)
          send(test, {:ran, self(), result, sent_messages(0)})

          case result do
            {:ok, nil, %Crier.Conn{} = new_conn} -> loop(new_conn, test)
            _ -> loop(conn, test)
          end

        :return ->
          :ok
      end
    end

    defp sent_messages(count) do
      receive do
        {:plug_conn, :sent} -> sent_messages(count + 1)
      after
        0 -> count
      end
    end
  end

  setup context do
    Server.start!(context, handler: {Runner, self()}, heartbeat: 50)
  end

  # Sends `request` (raw bytes) and waits for its request process.
  defp request(port, request) do
    client = RawClient.connect(port)
    :ok = :gen_tcp.send(client, request)
    assert_receive {:request, pid, conn}, 5_000
    {client, pid, conn}
  end

  defp get(port, path, headers \\ "") do
    request(port, "GET #{path} HTTP/1.1\r\nhost: localhost\r\n#{headers}\r\n")
  end

  # Runs `fun` in the request process; returns its result and how many `{:plug_conn, :sent}`
  # messages it left there.
  defp run(pid, fun) do
    send(pid, {:run, fun})
    assert_receive {:ran, ^pid, result, sent}, 5_000
    {result, sent}
  end

  defp finish(pid), do: send(pid, :return)

  # Sends `GET /next` on `client`, kept alive after the response before it, and answers it
  # 200 with `body`; returns all `client` read up to the end of that response.
  defp answer_next(client, body) do
    :ok = :gen_tcp.send(client, "GET /next HTTP/1.1\r\nhost: localhost\r\n\r\n")
    assert_receive {:request, next, %Crier.Conn{path: "/next"}}, 5_000
    run(next, &Impl.send_resp(&1, 200, [], body))
    finish(next)
    {:ok, data} = RawClient.read_until(client, "\r\n\r\n" <> body)
    data
  end

  # Reads a response head and then exactly `length` body bytes.
  defp read_sized(client, length) do
    {:ok, data} = RawClient.read_until(client, "\r\n\r\n")
    [head, body] = :binary.split(data, "\r\n\r\n")
    missing = length - byte_size(body)
    {:ok, more} = if missing > 0, do: :gen_tcp.recv(client, missing, 5_000), else: {:ok, ""}
    RawClient.parse_response(head <> "\r\n\r\n" <> body <> more)
  end

  describe "send_resp/4" do
    test "writes status, headers and body; returns {:ok, nil, conn}; sends {:plug_conn, :sent}",
         %{port: port} do
      {client, pid, _conn} = get(port, "/")

      assert {{:ok, nil, %Crier.Conn{state: :sent}}, 1} =
               run(pid, &Impl.send_resp(&1, 201, [{"x-thing", "a b"}], ["hel", "lo"]))

      finish(pid)
      {:ok, data} = RawClient.read_until(client, ~r/\r\n\r\nhello\z/)
      assert data =~ ~r/\AHTTP\/1\.1 201 Created\r\n/
      assert {201, headers, "hello"} = RawClient.parse_response(data)
      assert {"x-thing", "a b"} in headers
      assert {"content-length", "5"} in headers
    end

    test "a HEAD request gets the head with the body's length and no body", %{port: port} do
      {client, pid, _conn} = request(port, "HEAD / HTTP/1.1\r\nhost: localhost\r\n\r\n")
      assert {{:ok, nil, _}, 1} = run(pid, &Impl.send_resp(&1, 200, [], "hello"))
      finish(pid)

      # The connection goes on to the next request, so no body byte was written.
      data = answer_next(client, "second")
      [head, rest] = :binary.split(data, "\r\n\r\n")
      assert head =~ "content-length: 5"
      assert rest =~ ~r/\AHTTP\/1\.1 200 OK\r\n/
    end

    test "after the client left it still returns {:ok, nil, conn}, as Plug.Conn expects",
         %{port: port} do
      {client, pid, conn} = get(port, "/")
      :gen_tcp.close(client)
      ref = conn.ref

      assert {{:ok, nil, %Crier.Conn{}}, 1} =
               run(pid, fn conn ->
                 receive do
                   {:crier, ^ref, {:error, :closed}} -> Impl.send_resp(conn, 200, [], "late")
                 end
               end)
    end
  end

  describe "send_file/6" do
    setup do
      # Three and a bit 64 KiB reads, with bytes that show any misplaced offset.
      data = for i <- 0..(3 * 65_536 + 99), into: <<>>, do: <<rem(i * 7 + div(i, 251), 256)>>
      path = Path.join(System.tmp_dir!(), "crier_send_file_#{System.unique_integer()}.bin")
      File.write!(path, data)
      on_exit(fn -> File.rm(path) end)
      %{data: data, path: path}
    end

    test "offset 0 and :all send the whole file with its content-length",
         %{port: port, data: data, path: path} do
      {client, pid, _conn} = get(port, "/")

      assert {{:ok, nil, %Crier.Conn{}}, 1} =
               run(pid, &Impl.send_file(&1, 200, [{"content-type", "x/y"}], path, 0, :all))

      finish(pid)
      assert {200, headers, body} = read_sized(client, byte_size(data))
      assert {"content-length", Integer.to_string(byte_size(data))} in headers
      assert {"content-type", "x/y"} in headers
      refute List.keymember?(headers, "transfer-encoding", 0)
      assert body == data
    end

    test "an offset and a length send that slice, across read boundaries",
         %{port: port, data: data, path: path} do
      {client, pid, _conn} = get(port, "/")
      offset = 65_536 - 10
      length = 65_536 + 20
      assert {{:ok, nil, _}, 1} = run(pid, &Impl.send_file(&1, 206, [], path, offset, length))
      finish(pid)

      # The connection stays usable: the next response follows the slice exactly.
      response = answer_next(client, "after")
      {206, headers, rest} = RawClient.parse_response(response)
      assert {"content-length", Integer.to_string(length)} in headers
      assert binary_part(rest, 0, length) == binary_part(data, offset, length)
      assert binary_part(rest, length, byte_size(rest) - length) =~ ~r/\AHTTP\/1\.1 200 OK/
    end

    test "an offset with :all sends the rest; a length past the end is cut to the file",
         %{port: port, data: data, path: path} do
      size = byte_size(data)

      for {offset, length, expected} <- [
            {size - 5, :all, binary_part(data, size - 5, 5)},
            {size - 3, 1_000, binary_part(data, size - 3, 3)},
            {size, :all, ""}
          ] do
        {client, pid, _conn} = get(port, "/")
        assert {{:ok, nil, _}, 1} = run(pid, &Impl.send_file(&1, 200, [], path, offset, length))
        finish(pid)
        {:ok, response} = RawClient.read_until(client, "\r\n\r\n" <> expected)

        assert {200, headers, ^expected} = RawClient.parse_response(response)
        assert {"content-length", Integer.to_string(byte_size(expected))} in headers
        :gen_tcp.close(client)
      end
    end

    test "a HEAD request gets the length and no body", %{port: port, data: data, path: path} do
      {client, pid, _conn} = request(port, "HEAD / HTTP/1.1\r\nhost: localhost\r\n\r\n")
      assert {{:ok, nil, _}, 1} = run(pid, &Impl.send_file(&1, 200, [], path, 0, :all))
      finish(pid)
      response = answer_next(client, "second")
      [head, rest] = :binary.split(response, "\r\n\r\n")
      assert head =~ "content-length: #{byte_size(data)}"
      assert rest =~ ~r/\AHTTP\/1\.1 200 OK/
    end

    test "a file larger than every buffer is streamed, never held in memory",
         %{port: port, server: server} do
      # 32 MiB: more than the socket buffers and the write queue take, so the sender must
      # wait for the client while the rest of the file is still on disk.
      size = 32 * 1024 * 1024
      path = Path.join(System.tmp_dir!(), "crier_big_file_#{System.unique_integer()}.bin")
      block = :crypto.strong_rand_bytes(1024 * 1024)
      File.write!(path, List.duplicate(block, 32))
      on_exit(fn -> File.rm(path) end)

      {client, pid, _conn} = get(port, "/")
      send(pid, {:run, &Impl.send_file(&1, 200, [], path, 0, :all)})

      # The request process waits for the queue to drain: the client has read nothing.
      Wait.until(fn ->
        Process.info(pid, :status) == {:status, :waiting} and
          Crier.stats(server).queued_bytes > 0
      end)

      {:binary, binaries} = Process.info(pid, :binary)
      held = binaries |> Enum.map(fn {_id, bytes, _refs} -> bytes end) |> Enum.sum()
      assert held < 1024 * 1024
      assert Crier.stats(server).queued_bytes < 1024 * 1024

      {:ok, data} = RawClient.read_until(client, "\r\n\r\n")
      [_head, first] = :binary.split(data, "\r\n\r\n")
      {:ok, rest} = :gen_tcp.recv(client, size - byte_size(first), 10_000)
      assert :erlang.md5([first, rest]) == :erlang.md5(List.duplicate(block, 32))
      assert_receive {:ran, ^pid, {:ok, nil, _}, 1}, 5_000
    end

    test "a missing file raises File.Error and sends nothing", %{port: port} do
      {_client, pid, _conn} = get(port, "/")

      assert {%File.Error{reason: :enoent}, 0} =
               run(pid, fn conn ->
                 try do
                   Impl.send_file(conn, 200, [], "/nonexistent/crier", 0, :all)
                 rescue
                   error -> error
                 end
               end)

      assert {false, 0} = run(pid, &Crier.Native.conn_response_started(&1.resource))
    end
  end

  describe "send_chunked/3 and chunk/2" do
    test "chunked framing; chunk/2 returns :ok; the last chunk comes when the plug returns",
         %{port: port} do
      {client, pid, _conn} = get(port, "/")

      assert {{:ok, nil, %Crier.Conn{state: :chunked}}, 1} =
               run(pid, &Impl.send_chunked(&1, 200, [{"content-type", "text/plain"}]))

      assert {:ok, 0} = run(pid, &Impl.chunk(&1, "one "))
      assert {:ok, 0} = run(pid, &Impl.chunk(&1, ["tw", ?o]))
      finish(pid)

      {:ok, response} = RawClient.read_until(client, "0\r\n\r\n")
      {200, headers, body} = RawClient.parse_response(response)
      assert {"transfer-encoding", "chunked"} in headers
      assert RawClient.dechunk(body) == {"one two", true}
    end

    test "a content-length header gives a sized body instead of chunks", %{port: port} do
      {client, pid, _conn} = get(port, "/")

      assert {{:ok, nil, _}, 1} = run(pid, &Impl.send_chunked(&1, 200, [{"Content-Length", "6"}]))

      assert {:ok, 0} = run(pid, &Impl.chunk(&1, "abc"))
      assert {:ok, 0} = run(pid, &Impl.chunk(&1, "def"))
      finish(pid)

      {:ok, response} = RawClient.read_until(client, "abcdef")
      {200, headers, "abcdef"} = RawClient.parse_response(response)
      assert {"content-length", "6"} in headers
      refute List.keymember?(headers, "transfer-encoding", 0)
    end

    test "a text/event-stream response gets heartbeat comments while idle", %{port: port} do
      {client, pid, _conn} = get(port, "/")

      run(pid, &Impl.send_chunked(&1, 200, [{"content-type", "text/event-stream"}]))
      assert {:ok, response} = RawClient.read_until(client, "\r\n3\r\n:\n\n\r\n")
      assert {200, _headers, _body} = RawClient.parse_response(response)
      finish(pid)
    end

    test "HEAD gets the head alone and chunk/2 writes nothing", %{port: port} do
      {client, pid, _conn} = request(port, "HEAD / HTTP/1.1\r\nhost: localhost\r\n\r\n")
      assert {{:ok, nil, _}, 1} = run(pid, &Impl.send_chunked(&1, 200, []))
      assert {:ok, 0} = run(pid, &Impl.chunk(&1, "invisible"))
      finish(pid)
      response = answer_next(client, "second")
      [_head, rest] = :binary.split(response, "\r\n\r\n")
      assert rest =~ ~r/\AHTTP\/1\.1 200 OK/
      refute response =~ "invisible"
    end

    test "after the client closes, chunk/2 returns {:error, :closed}, and stays so",
         %{port: port, server: server} do
      {client, pid, conn} = get(port, "/")
      run(pid, &Impl.send_chunked(&1, 200, []))
      {:ok, _} = RawClient.read_until(client, "\r\n\r\n")
      :gen_tcp.close(client)
      ref = conn.ref

      assert {{:error, :closed}, 0} =
               run(pid, fn conn ->
                 receive do
                   {:crier, ^ref, {:error, :closed}} -> Impl.chunk(conn, "late")
                 end
               end)

      assert {{:error, :closed}, 0} = run(pid, &Impl.chunk(&1, "later"))
      finish(pid)
      Wait.until(fn -> Crier.stats(server).connections == 0 end)
      assert %{streams: 0, tasks: 0} = Crier.stats(server)
    end
  end

  describe "read_req_body/2" do
    test "returns {:ok, body, conn} for a content-length body", %{port: port} do
      {_client, pid, _conn} =
        request(port, "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n0123456789")

      assert {{:ok, "0123456789", %Crier.Conn{}}, 0} = run(pid, &Impl.read_req_body(&1, []))
    end

    test "returns {:more, part, conn} at :length, then the rest", %{port: port} do
      {_client, pid, _conn} =
        request(port, "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n0123456789")

      assert {{:more, "0123", %Crier.Conn{}}, 0} =
               run(pid, &Impl.read_req_body(&1, length: 4, read_length: 4))

      assert {{:ok, "456789", _}, 0} = run(pid, &Impl.read_req_body(&1, []))
    end

    test "length: 0 returns what is there, up to :read_length, as Cowboy does", %{port: port} do
      {_client, pid, _conn} =
        request(port, "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n0123456789")

      assert {{:more, part, %Crier.Conn{}}, 0} =
               run(pid, &Impl.read_req_body(&1, length: 0, read_length: 4))

      assert byte_size(part) in 1..4
      assert {{:ok, rest, _}, 0} = run(pid, &Impl.read_req_body(&1, []))
      assert part <> rest == "0123456789"
    end

    test "length: 0 on an empty body returns {:ok, \"\", conn}", %{port: port} do
      {_client, pid, _conn} = get(port, "/")
      assert {{:ok, "", %Crier.Conn{}}, 0} = run(pid, &Impl.read_req_body(&1, length: 0))
    end

    test "decodes a chunked body that arrives in pieces", %{port: port} do
      {client, pid, _conn} =
        request(
          port,
          "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )

      send(pid, {:run, &Impl.read_req_body(&1, read_timeout: 5_000)})
      :ok = :gen_tcp.send(client, "2\r\nde\r\n0\r\n\r\n")
      assert_receive {:ran, ^pid, {:ok, "abcde", %Crier.Conn{}}, 0}, 5_000
    end

    test "returns {:error, :timeout} when the body does not come in :read_timeout",
         %{port: port} do
      {_client, pid, _conn} =
        request(port, "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n")

      assert {{:error, :timeout}, 0} = run(pid, &Impl.read_req_body(&1, read_timeout: 20))
    end
  end

  describe "inform/3" do
    test "writes a 1xx before the response and returns :ok; atom header names are allowed",
         %{port: port} do
      {client, pid, _conn} = get(port, "/")

      assert {:ok, 0} = run(pid, &Impl.inform(&1, 103, [{:link, "</a.css>; rel=preload"}]))

      run(pid, &Impl.send_resp(&1, 200, [], "ok"))
      finish(pid)

      {:ok, response} = RawClient.read_until(client, "\r\n\r\nok")

      assert response =~
               ~r/\AHTTP\/1\.1 103 Early Hints\r\nlink: <\/a\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/
    end

    test "HTTP/1.0 clients get no 1xx; the call still returns :ok", %{port: port} do
      {client, pid, _conn} = request(port, "GET / HTTP/1.0\r\n\r\n")
      assert {:ok, 0} = run(pid, &Impl.inform(&1, 103, [{"link", "</a.css>"}]))
      run(pid, &Impl.send_resp(&1, 200, [], "ok"))
      finish(pid)
      {:closed, response} = RawClient.read_to_close(client)
      assert response =~ ~r/\AHTTP\/1\.0 200 OK\r\n/
    end
  end

  describe "upgrade/3 and push/3" do
    test "return {:error, :not_supported} and write nothing", %{port: port} do
      {client, pid, _conn} = get(port, "/")
      assert {{:error, :not_supported}, 0} = run(pid, &Impl.upgrade(&1, :websocket, []))
      assert {{:error, :not_supported}, 0} = run(pid, &Impl.push(&1, "/a.css", []))
      assert {false, 0} = run(pid, &Crier.Native.conn_response_started(&1.resource))
      run(pid, &Impl.send_resp(&1, 204, [], ""))
      finish(pid)
      {:ok, response} = RawClient.read_until(client, "\r\n\r\n")
      assert response =~ ~r/\AHTTP\/1\.1 204 No Content\r\n/
    end
  end

  describe "connection data" do
    test "peer, sock, ssl and protocol", %{port: port} do
      {client, pid, _conn} = get(port, "/")
      {:ok, {client_ip, client_port}} = :inet.sockname(client)

      assert {%{address: ^client_ip, port: ^client_port, ssl_cert: nil}, 0} =
               run(pid, &Impl.get_peer_data/1)

      assert {%{address: {127, 0, 0, 1}, port: ^port}, 0} = run(pid, &Impl.get_sock_data/1)
      assert {nil, 0} = run(pid, &Impl.get_ssl_data/1)
      assert {:"HTTP/1.1", 0} = run(pid, &Impl.get_http_protocol/1)

      {_client, pid10, _conn} = request(port, "GET / HTTP/1.0\r\n\r\n")
      assert {:"HTTP/1.0", 0} = run(pid10, &Impl.get_http_protocol/1)
    end
  end

  describe "conn_fields/1 (the %Plug.Conn{} fields)" do
    test "method, path, path_info, query, headers, remote_ip", %{port: port} do
      {_client, _pid, conn} =
        request(port, "DELETE /a//b/c%20d/?x=1&y HTTP/1.1\r\nHost: example.com\r\nX-Y: z\r\n\r\n")

      fields = Impl.conn_fields(conn)
      assert fields[:method] == "DELETE"
      assert fields[:request_path] == "/a//b/c%20d/"
      assert fields[:path_info] == ["a", "b", "c%20d"]
      assert fields[:query_string] == "x=1&y"
      assert fields[:scheme] == :http
      assert fields[:remote_ip] == {127, 0, 0, 1}
      assert {"x-y", "z"} in fields[:req_headers]
      assert {fields[:host], fields[:port]} == {"example.com", 80}
    end

    test "host and port come from the Host header, port 80 when it has none", %{port: port} do
      for {host_header, expected} <- [
            {"host: example.com:8080\r\n", {"example.com", 8080}},
            {"host: [::1]:4000\r\n", {"[::1]", 4000}},
            {"host: [::1]\r\n", {"[::1]", 80}},
            {"host: banana:\r\n", {"banana", 80}}
          ] do
        {_client, _pid, conn} = request(port, "GET / HTTP/1.1\r\n#{host_header}\r\n")
        fields = Impl.conn_fields(conn)
        assert {fields[:host], fields[:port]} == expected
      end
    end

    test "an absolute-form target gives host and port, whatever Host says (RFC 9112 3.2.2)",
         %{port: port} do
      {_client, _pid, conn} =
        request(port, "GET http://banana:1234/x HTTP/1.1\r\nhost: orange:2345\r\n\r\n")

      fields = Impl.conn_fields(conn)
      assert {fields[:host], fields[:port], fields[:request_path]} == {"banana", 1234, "/x"}
    end

    test "HTTP/1.0 without Host: host \"\" and port 80, as Bandit and Cowboy", %{port: port} do
      {_client, _pid, conn} = request(port, "GET / HTTP/1.0\r\n\r\n")
      fields = Impl.conn_fields(conn)
      assert {fields[:host], fields[:port]} == {"", 80}
    end
  end
end
