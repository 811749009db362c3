# What an app moving from Cowboy or Bandit expects of Crier.PlugAdapter, where the Plug
# contract or RFC 9112 says so. Runs only with Plug loaded (CRIER_PLUG_PATH, see the README).
if Code.ensure_loaded?(Plug.Router) do
  defmodule Crier.PlugConformanceTest.TeapotError do
    @moduledoc "An exception whose Plug status is an atom."
    defexception message: "short and stout", plug_status: :im_a_teapot
  end

  defmodule Crier.PlugConformanceTest.Router do
    @moduledoc """
    Plug code as Cowboy and Bandit run it. Routes that report to the test find it in the
    router's opts.
    """
    use Plug.Router

    alias Crier.PlugConformanceTest.TeapotError

    plug(:match)
    plug(:dispatch)

    get "/raise-teapot" do
      _ = conn
      raise TeapotError
    end

    get "/teapot" do
      send_resp(conn, :im_a_teapot, "tea")
    end

    get "/accepted-chunked" do
      {:ok, conn} = conn |> send_chunked(:accepted) |> chunk("queued")
      conn
    end

    get "/early-hints" do
      conn
      |> inform(:early_hints, [{"link", "</a.css>; rel=preload"}])
      |> send_resp(:ok, "hinted")
    end

    get "/status/:code" do
      send_resp(conn, String.to_integer(code), "body")
    end

    get "/custom-status" do
      send_resp(conn, :token_expired, "expired")
    end

    post "/read-zero" do
      {:more, part, conn} = read_body(conn, length: 0, read_length: 4)
      {:ok, rest, conn} = read_body(conn)
      send_resp(conn, 200, "#{byte_size(part)} #{part <> rest}")
    end

    # Plug.Cowboy's own read_req_body_partial test, as it reads a 1,000,000-byte body.
    post "/read-partial" do
      {:more, first, conn} = read_body(conn, length: 0, read_length: 1_000)
      {:more, second, conn} = read_body(conn, length: 5_000, read_length: 1_000)
      {:more, third, conn} = read_body(conn, length: 20_000, read_length: 1_000)
      {:ok, rest, conn} = read_body(conn, length: 2_000_000)
      # Once it is over, always {:ok, "", conn}.
      {:ok, "", conn} = read_body(conn, length: 2_000_000)
      {:ok, "", conn} = read_body(conn, length: 0)
      sizes = Enum.map_join([first, second, third, rest], " ", &byte_size/1)
      body = first <> second <> third <> rest
      send_resp(conn, 200, "#{sizes} #{:erlang.md5(body) |> Base.encode16()}")
    end

    # Answers HEAD as a plug does that knows its GET body's size without making it.
    head "/head-length" do
      conn
      |> put_resp_header("content-length", "10001")
      |> send_resp(200, "")
    end

    get "/host" do
      send_resp(conn, 200, "#{conn.host} #{conn.port} #{conn.request_path}")
    end

    get "/crash" do
      _ = conn
      raise "boom"
    end

    get "/linked-exit" do
      _ = conn
      spawn_link(fn -> exit(:crier_linked_boom) end)
      Process.sleep(:infinity)
    end

    get "/linked-task" do
      _ = conn
      Task.async(fn -> raise "crier task boom" end) |> Task.await()
    end

    get "/worker-chunk" do
      conn = send_chunked(conn, 200)
      owner = self()

      spawn(fn ->
        result =
          try do
            Plug.Conn.chunk(conn, "worker")
          rescue
            error -> error
          end

        send(owner, {:worker, result})
      end)

      receive do
        {:worker, %ArgumentError{message: message}} ->
          {:ok, conn} = chunk(conn, "owner: " <> message)
          conn
      end
    end

    match _ do
      send_resp(conn, 404, "no route")
    end
  end

  defmodule Crier.PlugConformanceTest do
    @moduledoc """
    Crier.PlugAdapter against the behaviour of Cowboy and Bandit, over real sockets, one
    describe per point of issue 12.
    """
    use ExUnit.Case, async: true

    alias Crier.PlugConformanceTest.Router
    alias Crier.Test.{RawClient, Server}
    import Crier.Test.LogForwarder, only: [forward_logs: 0, assert_logged: 1]

    @moduletag :plug

    setup context do
      Server.start!(context, plug: {Router, []})
    end

    defp request(port, raw), do: RawClient.send_new(port, raw)
    defp get(port, path), do: request(port, "GET #{path} HTTP/1.1\r\nhost: x\r\n\r\n")

    # The status line and everything up to `until`.
    defp read_response(client, until) do
      {:ok, data} = RawClient.read_until(client, until)
      data
    end

    describe "1. statuses given as atoms" do
      test "a Plug.Exception whose plug_status is an atom gets that status", %{port: port} do
        client = get(port, "/raise-teapot")
        {:closed, data} = RawClient.read_to_close(client)
        assert String.starts_with?(data, "HTTP/1.1 418 I'm a teapot\r\n")
        assert {418, _, "I'm a teapot"} = RawClient.parse_response(data)
      end

      test "send_resp, send_chunked and inform take atoms", %{port: port} do
        assert read_response(get(port, "/teapot"), "\r\n\r\ntea") =~
                 ~r/\AHTTP\/1\.1 418 I'm a teapot\r\n/

        assert read_response(get(port, "/accepted-chunked"), "0\r\n\r\n") =~
                 ~r/\AHTTP\/1\.1 202 Accepted\r\n.*\r\n\r\n6\r\nqueued\r\n0\r\n\r\n\z/s

        assert read_response(get(port, "/early-hints"), "hinted") =~
                 ~r/\AHTTP\/1\.1 103 Early Hints\r\nlink: <\/a\.css>; rel=preload\r\n\r\nHTTP\/1\.1 200 OK\r\n/
      end
    end

    describe "2. reason phrases are Plug.Conn.Status.reason_phrase/1's" do
      test "for every status Plug knows", %{port: port} do
        client = RawClient.connect(port)

        for code <- [200, 203, 301, 404, 413, 414, 416, 418, 422, 500, 511] do
          :ok = :gen_tcp.send(client, "GET /status/#{code} HTTP/1.1\r\nhost: x\r\n\r\n")
          data = read_response(client, "\r\n\r\nbody")
          expected = "HTTP/1.1 #{code} #{Plug.Conn.Status.reason_phrase(code)}\r\n"
          assert String.starts_with?(data, expected), data
        end
      end

      test "custom statuses from config :plug, :statuses, by code and by atom", %{port: port} do
        assert Plug.Conn.Status.reason_phrase(498) == "Token Expired"

        assert read_response(get(port, "/custom-status"), "\r\n\r\nexpired") =~
                 ~r/\AHTTP\/1\.1 498 Token Expired\r\n/

        assert read_response(get(port, "/status/799"), "\r\n\r\nbody") =~
                 ~r/\AHTTP\/1\.1 799 Custom Status\r\n/
      end

      test "a code Plug does not know gets Crier's phrase (none)", %{port: port} do
        assert read_response(get(port, "/status/797"), "\r\n\r\nbody") =~
                 ~r/\AHTTP\/1\.1 797 \r\n/
      end
    end

    describe "3. read_body/2 with length: 0" do
      test "returns the bytes that are there, up to :read_length, as Cowboy", %{port: port} do
        client =
          request(
            port,
            "POST /read-zero HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n0123456789"
          )

        data = read_response(client, "0123456789")
        assert {200, _, <<read, " 0123456789">>} = RawClient.parse_response(data)
        assert read in ?1..?4
      end

      test "reads in pieces as Plug.Cowboy's own test expects", %{port: port} do
        body = :binary.copy("abcdefghij", 100_000)
        head = "POST /read-partial HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n"
        client = request(port, [head, body])
        md5 = Base.encode16(:erlang.md5(body))
        data = read_response(client, md5)
        assert {200, _, answer} = RawClient.parse_response(data)

        assert [_, _, _, _, ^md5] = fields = String.split(answer, " ")
        [first, second, third, rest] = fields |> Enum.take(4) |> Enum.map(&String.to_integer/1)
        # Each call returns bytes, at most its :length (length: 0 takes one :read_length piece).
        assert first in 1..1_000 and second in 1..5_000 and third in 1..20_000
        assert first + second + third + rest == 1_000_000
      end
    end

    describe "4-7. request target and Host (RFC 9112 section 3.2)" do
      # Sends `raw` on a fresh connection; returns the status and body of the answer.
      defp answer(port, raw) do
        client = request(port, raw)
        {:ok, data} = RawClient.read_until(client, "\r\n\r\n")
        {status, headers, body} = RawClient.parse_response(data)
        length = headers |> List.keyfind("content-length", 0) |> elem(1) |> String.to_integer()

        {:ok, more} =
          if byte_size(body) < length,
            do: :gen_tcp.recv(client, length - byte_size(body), 5_000),
            else: {:ok, ""}

        {status, body <> more}
      end

      test "4. an absolute-form target gives conn.host and conn.port, not Host", %{port: port} do
        raw = "GET http://banana:1234/host HTTP/1.1\r\nhost: orange:2345\r\n\r\n"
        assert answer(port, raw) == {200, "banana 1234 /host"}
      end

      test "5. an invalid Host is 400", %{port: port} do
        assert {400, _} = answer(port, "GET /host HTTP/1.1\r\nhost: banana:-1234\r\n\r\n")
      end

      test "6. HTTP/1.0 without Host: conn.host is \"\" and conn.port 80", %{port: port} do
        assert answer(port, "GET /host HTTP/1.0\r\n\r\n") == {200, " 80 /host"}
      end

      test "7. GET * is 400", %{port: port} do
        assert {400, _} = answer(port, "GET * HTTP/1.1\r\nhost: x\r\n\r\n")
      end
    end

    describe "8. HEAD with a plug-set content-length" do
      test "the plug's content-length goes out with the empty body", %{port: port} do
        client =
          request(
            port,
            "HEAD /head-length HTTP/1.1\r\nhost: x\r\n\r\nGET /status/200 HTTP/1.1\r\nhost: x\r\n\r\n"
          )

        data = read_response(client, "\r\n\r\nbody")
        [head, rest] = :binary.split(data, "\r\n\r\n")
        assert head =~ ~r/\r\ncontent-length: 10001(\r\n|\z)/
        refute head =~ "content-length: 0"
        assert String.starts_with?(rest, "HTTP/1.1 200 OK\r\n")
      end
    end

    describe "9. after a plug raises" do
      test "the 500 closes the connection", %{port: port} do
        client =
          request(
            port,
            "GET /crash HTTP/1.1\r\nhost: x\r\n\r\nGET /teapot HTTP/1.1\r\nhost: x\r\n\r\n"
          )

        {:closed, data} = RawClient.read_to_close(client)
        assert {500, headers, "Internal Server Error"} = RawClient.parse_response(data)
        assert {"connection", "close"} in headers
        refute data =~ "418"
      end
    end

    describe "10. a linked process that exits abnormally" do
      for {path, logged} <- [
            {"/linked-exit", ~r/GET \/linked-exit.*:crier_linked_boom/s},
            {"/linked-task", ~r/GET \/linked-task.*crier task boom/s}
          ] do
        test "#{path}: the client gets a 500 and a close; the plug process's exit reason is " <>
               "logged",
             %{port: port} do
          forward_logs()
          client = get(port, unquote(path))
          {:closed, data} = RawClient.read_to_close(client)
          assert {500, headers, "Internal Server Error"} = RawClient.parse_response(data)
          assert {"connection", "close"} in headers
          assert_logged(unquote(Macro.escape(logged)))
        end
      end
    end

    describe "11. adapter calls from a process other than the owner" do
      test "are refused at once with an ArgumentError; the stream stays healthy",
           %{port: port} do
        data = read_response(get(port, "/worker-chunk"), "0\r\n\r\n")
        assert {200, _, body} = RawClient.parse_response(data)
        assert {"owner: " <> message, true} = RawClient.dechunk(body)
        assert message =~ "process that owns the conn"
        refute data =~ "worker\r\n"
      end
    end
  end
end
