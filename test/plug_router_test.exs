# A real Plug.Router served by Crier. Runs only with Plug loaded (CRIER_PLUG_PATH, see the
# README); without it the file defines nothing and test_helper.exs excludes :plug.
if Code.ensure_loaded?(Plug.Router) do
  defmodule Crier.PlugRouterTest.Router do
    @moduledoc """
    An ordinary Plug app, written as Plug's docs show, knowing nothing of Crier. Routes that
    need the test process find it in the router's opts.
    """
    use Plug.Router, copy_opts_to_assign: :router_opts

    @file_path Path.join(System.tmp_dir!(), "crier_plug_router_test.bin")

    plug(Plug.Head)
    plug(:match)
    plug(Plug.Parsers, parsers: [:urlencoded, :multipart], pass: ["*/*"])
    plug(:dispatch)

    @doc "Where `GET /file` reads its file."
    def file_path, do: @file_path

    get "/json/:name" do
      ip = :inet.ntoa(conn.remote_ip)
      body = ~s({"hello":"#{name}","q":"#{conn.query_string}","ip":"#{ip}"})

      conn
      |> put_resp_content_type("application/json")
      |> send_resp(200, body)
    end

    post "/form" do
      %{"a" => a, "b" => b} = conn.body_params
      send_resp(conn, 200, "a=#{a} b=#{b}")
    end

    post "/upload" do
      %Plug.Upload{filename: filename, path: path} = conn.body_params["file"]
      contents = File.read!(path)

      send_resp(
        conn,
        200,
        "#{filename} #{byte_size(contents)} #{:erlang.md5(contents) |> Base.encode16()}"
      )
    end

    # A raw body read in Plug's documented loop ({:more, ...} until {:ok, ...}).
    post "/raw" do
      {body, conn} = read_all(conn, [])
      send_resp(conn, 200, "#{byte_size(body)} #{:erlang.md5(body) |> Base.encode16()}")
    end

    get "/file" do
      conn
      |> put_resp_content_type("application/octet-stream")
      |> send_file(200, @file_path)
    end

    get "/events" do
      conn =
        conn
        |> put_resp_header("content-type", "text/event-stream")
        |> put_resp_header("cache-control", "no-cache")
        |> send_chunked(200)

      test = conn.assigns.router_opts[:test]
      send(test, {:sse_process, self()})

      # Plug's chunk/2 example, fed by messages from the test.
      Stream.repeatedly(fn -> receive(do: ({:event, data} -> "data: #{data}\n\n")) end)
      |> Enum.reduce_while(conn, fn chunk, conn ->
        case Plug.Conn.chunk(conn, chunk) do
          {:ok, conn} ->
            {:cont, conn}

          {:error, :closed} ->
            send(test, {:chunk_closed, self()})
            {:halt, conn}
        end
      end)
    end

    get "/crash" do
      _ = conn
      raise "boom"
    end

    get "/bad" do
      _ = conn
      raise Plug.BadRequestError
    end

    get "/crash-mid-stream" do
      {:ok, _conn} = conn |> send_chunked(200) |> chunk("partial")
      raise "boom after a chunk"
    end

    get "/early-hints" do
      conn
      |> inform(103, [{"link", "</app.css>; rel=preload"}])
      |> send_resp(200, "hinted")
    end

    get "/peer" do
      %{address: address, port: port} = get_peer_data(conn)
      %{port: local_port} = get_sock_data(conn)

      send_resp(
        conn,
        200,
        "#{:inet.ntoa(address)} #{port} #{local_port} #{get_http_protocol(conn)} " <>
          "#{inspect(get_ssl_data(conn))} #{conn.host}:#{conn.port} #{request_url(conn)}"
      )
    end

    match _ do
      send_resp(conn, 404, "no route")
    end

    defp read_all(conn, acc) do
      case read_body(conn, length: 100_000, read_length: 30_000) do
        {:more, part, conn} -> read_all(conn, [acc | part])
        {:ok, part, conn} -> {IO.iodata_to_binary([acc | part]), conn}
      end
    end
  end

  defmodule Crier.PlugRouterTest do
    @moduledoc "A real Plug.Router on Crier, over real sockets."
    use ExUnit.Case, async: true

    alias Crier.PlugRouterTest.Router
    alias Crier.Test.{RawClient, Server, Wait}

    @moduletag :plug

    setup_all do
      data = :crypto.strong_rand_bytes(300_000)
      File.write!(Router.file_path(), data)
      on_exit(fn -> File.rm(Router.file_path()) end)
      %{file_data: data}
    end

    setup context do
      Server.start!(context, plug: {Router, test: self()})
    end

    defp request(port, raw), do: RawClient.send_new(port, raw)
    defp get(port, path), do: request(port, "GET #{path} HTTP/1.1\r\nhost: x\r\n\r\n")

    # Waits for the /events plug to report its process; returns it and a monitor on it.
    defp monitor_sse_process do
      assert_receive {:sse_process, plug_pid}, 5_000
      {plug_pid, Process.monitor(plug_pid)}
    end

    # Waits until the server has no connection, then asserts no stream or task is left.
    defp assert_nothing_open(server) do
      Wait.until(fn -> Crier.stats(server).connections == 0 end)
      assert %{streams: 0, tasks: 0} = Crier.stats(server)
    end

    # Reads one response with a content-length body.
    defp response(client) do
      {:ok, data} = RawClient.read_until(client, "\r\n\r\n")
      {status, headers, body} = RawClient.parse_response(data)

      case List.keyfind(headers, "content-length", 0) do
        {_, length} ->
          missing = String.to_integer(length) - byte_size(body)
          {:ok, more} = if missing > 0, do: :gen_tcp.recv(client, missing, 5_000), else: {:ok, ""}
          {status, headers, body <> more}

        nil ->
          {status, headers, body}
      end
    end

    test "the plug runs on Plug 1.19", _ do
      assert {:ok, vsn} = :application.get_key(:plug, :vsn)
      assert to_string(vsn) =~ ~r/\A1\.19\./
    end

    test "a JSON endpoint: path params, query string, remote_ip, content-type", %{port: port} do
      client = request(port, "GET /json/crier?x=1 HTTP/1.1\r\nhost: localhost\r\n\r\n")
      {200, headers, body} = response(client)
      assert body == ~s({"hello":"crier","q":"x=1","ip":"127.0.0.1"})
      assert {"content-type", "application/json; charset=utf-8"} in headers
    end

    test "HEAD through Plug.Head gets the head alone, and the connection goes on",
         %{port: port} do
      client =
        request(
          port,
          "HEAD /json/a HTTP/1.1\r\nhost: x\r\n\r\nGET /json/b HTTP/1.1\r\nhost: x\r\n\r\n"
        )

      {:ok, data} = RawClient.read_until(client, ~s("hello":"b"))
      [head, rest] = :binary.split(data, "\r\n\r\n")
      assert head =~ ~r/\AHTTP\/1\.1 200 OK\r\n/
      assert head =~ "content-length: #{byte_size(~s({"hello":"a","q":"","ip":"127.0.0.1"}))}"
      assert rest =~ ~r/\AHTTP\/1\.1 200 OK\r\n/
    end

    test "a urlencoded form through Plug.Parsers", %{port: port} do
      body = "a=1&b=two+words"

      client =
        request(
          port,
          "POST /form HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\n" <>
            "content-length: #{byte_size(body)}\r\n\r\n#{body}"
        )

      assert {200, _, "a=1 b=two words"} = response(client)
    end

    test "a multipart upload through Plug.Parsers and Plug.Upload", %{port: port} do
      file = :crypto.strong_rand_bytes(200_000)
      boundary = "crierboundary7"

      body =
        "--#{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"r.bin\"\r\n" <>
          "content-type: application/octet-stream\r\n\r\n" <>
          file <> "\r\n--#{boundary}--\r\n"

      client =
        request(
          port,
          "POST /upload HTTP/1.1\r\nhost: x\r\n" <>
            "content-type: multipart/form-data; boundary=#{boundary}\r\n" <>
            "content-length: #{byte_size(body)}\r\n\r\n" <> body
        )

      expected = "r.bin 200000 #{:erlang.md5(file) |> Base.encode16()}"
      assert {200, _, ^expected} = response(client)
    end

    test "a chunked raw body read with read_body/2 in pieces", %{port: port} do
      data = :crypto.strong_rand_bytes(250_000)

      chunks =
        for <<piece::binary-size(50_000) <- data>>,
          do: [Integer.to_string(50_000, 16), "\r\n", piece, "\r\n"]

      client =
        request(
          port,
          IO.iodata_to_binary([
            "POST /raw HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n",
            "transfer-encoding: chunked\r\n\r\n",
            chunks,
            "0\r\n\r\n"
          ])
        )

      expected = "250000 #{:erlang.md5(data) |> Base.encode16()}"
      assert {200, _, ^expected} = response(client)
    end

    test "send_file streams the file with its length", %{port: port, file_data: data} do
      client = get(port, "/file")
      {200, headers, body} = response(client)
      assert {"content-length", "300000"} in headers
      assert {"content-type", "application/octet-stream; charset=utf-8"} in headers
      assert body == data
    end

    test "inform/3 sends 103 Early Hints before the response", %{port: port} do
      client = get(port, "/early-hints")
      {:ok, data} = RawClient.read_until(client, "hinted")

      assert data =~
               ~r/\AHTTP\/1\.1 103 Early Hints\r\nlink: <\/app\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/
    end

    test "peer, sock, ssl and protocol data, host and port, request_url", %{port: port} do
      client = request(port, "GET /peer?a=b HTTP/1.1\r\nhost: example.com:8080\r\n\r\n")
      {:ok, {_, client_port}} = :inet.sockname(client)
      {200, _, body} = response(client)

      assert body ==
               "127.0.0.1 #{client_port} #{port} HTTP/1.1 nil example.com:8080 " <>
                 "http://example.com:8080/peer?a=b"
    end

    for {rule, path, status, body} <- [
          {"an unknown route gets the router's 404", "/nowhere", 404, "no route"},
          {"an exception with a Plug.Exception status gives that status", "/bad", 400,
           "Bad Request"}
        ] do
      test rule, %{port: port} do
        assert {unquote(status), _, unquote(body)} = response(get(port, unquote(path)))
      end
    end

    test "an exception mid-stream cuts the connection instead of ending the body cleanly",
         %{port: port} do
      client = get(port, "/crash-mid-stream")
      {:closed, data} = RawClient.read_to_close(client)
      {200, headers, body} = RawClient.parse_response(data)
      assert {"transfer-encoding", "chunked"} in headers
      assert body == "7\r\npartial\r\n"
    end

    describe "an SSE endpoint written as Plug's docs show" do
      test "streams events; the client closing ends the plug process within 100 ms with " <>
             "{:shutdown, :closed}, and nothing stays open",
           %{port: port, server: server} do
        client =
          request(port, "GET /events HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")

        {plug_pid, monitor} = monitor_sse_process()

        send(plug_pid, {:event, "one"})
        send(plug_pid, {:event, "two"})
        {:ok, data} = RawClient.read_until(client, "data: two\n\n")
        {200, headers, body} = RawClient.parse_response(data)
        assert {"content-type", "text/event-stream"} in headers
        assert {"transfer-encoding", "chunked"} in headers
        assert {"data: one\n\ndata: two\n\n", false} = RawClient.dechunk(body)
        assert %{streams: 1, connections: 1} = Crier.stats(server)

        :gen_tcp.close(client)
        assert_receive {:DOWN, ^monitor, :process, ^plug_pid, {:shutdown, :closed}}, 100

        assert_nothing_open(server)
      end

      test "a reset (RST) ends it the same way", %{port: port, server: server} do
        client = get(port, "/events")
        {plug_pid, monitor} = monitor_sse_process()
        # The event follows the monitor signal, so once it is on the wire the monitor is in
        # place (signals from different processes have no order: the close could beat it).
        send(plug_pid, {:event, "one"})
        {:ok, _} = RawClient.read_until(client, "data: one\n\n")

        RawClient.reset(client)
        assert_receive {:DOWN, ^monitor, :process, ^plug_pid, {:shutdown, :closed}}, 100
        assert_nothing_open(server)
      end

      @tag server_opts: [on_close: :message]
      test "with on_close: :message the plug's next chunk/2 returns {:error, :closed} and it " <>
             "returns normally",
           %{port: port, server: server} do
        client = get(port, "/events")
        {plug_pid, monitor} = monitor_sse_process()
        {:ok, _} = RawClient.read_until(client, "\r\n\r\n")

        :gen_tcp.close(client)
        Wait.until(fn -> Crier.stats(server).connections == 0 end)
        send(plug_pid, {:event, "too late"})
        assert_receive {:chunk_closed, ^plug_pid}, 5_000
        assert_receive {:DOWN, ^monitor, :process, ^plug_pid, :normal}, 5_000
        assert %{streams: 0, tasks: 0} = Crier.stats(server)
      end
    end
  end
end
