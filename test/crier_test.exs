defmodule CrierTest do
  @moduledoc "The foundation: a server starts, a request reaches its handler, chunks go out, closes come back."
  use ExUnit.Case, async: true

  alias Crier.Test.{ControlHandler, LogForwarder, RawClient, Server, Wait}

  setup context do
    Server.start!(context, handler: {ControlHandler, test: self()})
  end

  defp read_exactly(_client, size, acc) when byte_size(acc) >= size, do: {:ok, acc}

  defp read_exactly(client, size, acc) do
    case :gen_tcp.recv(client, 0, 5_000) do
      {:ok, data} -> read_exactly(client, size, acc <> data)
      error -> error
    end
  end

  defp hold_then_drop(test) do
    take_ownership(test)

    receive do
      :drop -> :erlang.garbage_collect()
    end

    send(test, :dropped)
    Process.sleep(:infinity)
  end

  defp take_ownership(test) do
    receive do
      {:conn, conn} ->
        :ok = Crier.Native.conn_set_owner(conn.resource, self(), :message)
        send(test, :owned)
    end

    :ok
  end

  # Sends a GET for `path` on a new connection and waits for its handler; returns the client,
  # the handler and the conn it got.
  defp request(port, path \\ "/") do
    client = RawClient.connect(port)
    :ok = RawClient.get(client, path)
    assert_receive {:called, handler, conn}
    {client, handler, conn}
  end

  defp open_stream(port, path \\ "/events") do
    {client, handler, conn} = request(port, path)

    {:ok, _} =
      ControlHandler.run(
        handler,
        &Crier.Conn.send_chunked(&1, 200, [{"content-type", "text/plain"}])
      )

    assert {:ok, _head} = RawClient.read_until(client, "\r\n\r\n")
    {client, handler, conn}
  end

  describe "starting" do
    test "port 0 picks a free port that Crier.port/1 tells", %{port: port} do
      assert port > 0
      client = RawClient.connect(port)
      :gen_tcp.close(client)
    end

    test "a port in use gives {:error, :eaddrinuse} from start, not a crash", %{port: port} do
      Process.flag(:trap_exit, true)
      opts = [name: :crier_port_clash, port: port, handler: {ControlHandler, test: self()}]
      assert {:error, :eaddrinuse} = Crier.start_link(opts)
    end

    test "an address not on this host gives {:error, :eaddrnotavail}" do
      Process.flag(:trap_exit, true)

      opts = [
        name: :crier_bad_ip,
        ip: {192, 0, 2, 1},
        port: 0,
        handler: {ControlHandler, test: self()}
      ]

      assert {:error, :eaddrnotavail} = Crier.start_link(opts)
    end

    test "bad options raise ArgumentError saying which" do
      assert_raise ArgumentError, ~r/:port/, fn ->
        Crier.child_spec(name: :x, port: -1, handler: ControlHandler)
      end

      assert_raise ArgumentError, ~r/:handler or a :plug/, fn -> Crier.child_spec(name: :x) end
    end
  end

  describe "a request" do
    test "reaches a fresh handler process with method, path, query, headers, peer and ref", %{
      port: port
    } do
      client = RawClient.connect(port)

      :ok =
        RawClient.get(client, "/rooms/7?since=3&x=%20", [
          {"Last-Event-ID", "41"},
          {"X-Custom", "A b"}
        ])

      assert_receive {:called, handler, conn}
      assert handler != self()
      assert conn.method == "GET"
      assert conn.path == "/rooms/7"
      assert conn.query == "since=3&x=%20"
      assert conn.version == :"HTTP/1.1"
      assert Crier.Conn.get_req_header(conn, "last-event-id") == ["41"]
      assert Crier.Conn.get_req_header(conn, "x-custom") == ["A b"]
      {:ok, {client_ip, client_port}} = :inet.sockname(client)
      assert conn.peer == {client_ip, client_port}
      assert is_integer(conn.ref)
    end

    test "each request gets its own process and ref", %{port: port} do
      for _ <- 1..2, do: port |> RawClient.connect() |> RawClient.get("/")
      assert_receive {:called, first, conn1}
      assert_receive {:called, second, conn2}
      assert first != second
      assert conn1.ref != conn2.ref
    end
  end

  describe "streaming" do
    test "send_chunked writes a chunked head and chunks arrive byte-exact", %{port: port} do
      {client, handler, _} = request(port)

      {:ok, _} =
        ControlHandler.run(
          handler,
          &Crier.Conn.send_chunked(&1, 200, [{"Content-Type", "text/event-stream"}])
        )

      {:ok, _} = ControlHandler.run(handler, &Crier.Conn.chunk(&1, ["data: ", "héllo", "\n\n"]))
      {:ok, _} = ControlHandler.run(handler, &Crier.Conn.chunk(&1, <<0, 1, 2, 255>>))
      send(handler, :return)

      assert {:ok, data} = RawClient.read_until(client, "0\r\n\r\n")
      {200, headers, body} = RawClient.parse_response(data)
      assert {"content-type", "text/event-stream"} in headers
      assert {"transfer-encoding", "chunked"} in headers
      assert body == "e\r\ndata: héllo\n\n\r\n4\r\n" <> <<0, 1, 2, 255>> <> "\r\n0\r\n\r\n"
    end

    test "large bodies and chunks (copied on a dirty scheduler) arrive whole", %{port: port} do
      {client, handler, _} = request(port)
      big = :crypto.strong_rand_bytes(2 * 1024 * 1024)
      {:ok, _} = ControlHandler.run(handler, &Crier.Conn.send_resp(&1, 200, [], big))
      assert {:ok, data} = RawClient.read_until(client, "content-length: 2097152", 5_000)
      {200, _headers, first} = RawClient.parse_response(data)
      assert {:ok, body} = read_exactly(client, byte_size(big), first)
      assert body == big
      send(handler, :return)

      :ok = RawClient.get(client, "/again")
      assert_receive {:called, second, _}
      {:ok, _} = ControlHandler.run(second, &Crier.Conn.send_chunked(&1, 200, []))
      iolist = List.duplicate(["abc", ?d, <<0>>], 100_000)
      {:ok, _} = ControlHandler.run(second, &Crier.Conn.chunk(&1, iolist))
      send(second, :return)
      assert {:ok, data} = RawClient.read_until(client, "\r\n0\r\n\r\n", 5_000)
      {200, _, chunked} = RawClient.parse_response(data)
      assert RawClient.dechunk(chunked) == {IO.iodata_to_binary(iolist), true}
    end

    test "the handler returning ends the response and the connection serves the next request",
         %{port: port} do
      {client, handler, _} = request(port, "/one")
      {:ok, _} = ControlHandler.run(handler, &Crier.Conn.send_resp(&1, 200, [], "first"))
      send(handler, :return)
      assert {:ok, _} = RawClient.read_until(client, "first")
      :ok = RawClient.get(client, "/two")
      assert_receive {:called, _second, %{path: "/two"}}
    end
  end

  describe "a handler that fails" do
    test "raising before any response gives a 500 and closes the connection, as Bandit does",
         %{port: port} do
      {client, handler, _} = request(port)
      send(handler, {:run, fn _conn -> raise "boom" end})
      # The handler's state is unknown: nothing more is read from this connection.
      :ok = RawClient.get(client, "/next")
      assert {:closed, data} = RawClient.read_to_close(client)
      assert {500, headers, "Internal Server Error"} = RawClient.parse_response(data)
      assert {"connection", "close"} in headers
      refute_received {:called, _, %{path: "/next"}}
    end

    test "an owner that dies before any response (a linked exit, a kill) gets its client a " <>
           "500 and a close, and its exit reason is logged",
         %{port: port} do
      LogForwarder.forward_logs()

      for {kill, logged} <- [
            {fn handler ->
               send(
                 handler,
                 {:run,
                  fn _ -> spawn_link(fn -> exit(:crier_boom) end) && :timer.sleep(:infinity) end}
               )
             end, ~r/GET \/: .*exited before it was done: :crier_boom/s},
            {&Process.exit(&1, :kill), ~r/GET \/: .*exited before it was done: killed/s}
          ] do
        {client, handler, _} = request(port)
        kill.(handler)
        assert {:closed, data} = RawClient.read_to_close(client)
        assert {500, headers, "Internal Server Error"} = RawClient.parse_response(data)
        assert {"connection", "close"} in headers
        LogForwarder.assert_logged(logged)
      end
    end

    test "returning without a response gives a 500", %{port: port} do
      {client, handler, _} = request(port)
      send(handler, :return)
      assert {:ok, data} = RawClient.read_until(client, "Internal Server Error")
      assert {500, _, _} = RawClient.parse_response(data)
    end

    test "raising mid-stream cuts the stream: what was sent arrives, the last chunk never", %{
      port: port
    } do
      {client, handler, _conn} = open_stream(port)
      {:ok, _} = ControlHandler.run(handler, &Crier.Conn.chunk(&1, "partial"))
      send(handler, {:run, fn _conn -> raise "boom" end})
      assert {:closed, body} = RawClient.read_to_close(client)
      assert body =~ "7\r\npartial\r\n"
      refute body =~ "0\r\n\r\n"
    end
  end

  describe "calls from a process other than the owner" do
    test "are refused at once with an ArgumentError; the stream stays healthy",
         %{port: port} do
      {client, handler, conn} = open_stream(port)

      # This test process is not the owner: each call fails before it touches the stream.
      for call <- [
            &Crier.Conn.chunk(&1, "from elsewhere"),
            &Crier.send_event(&1, %Crier.Event{data: "from elsewhere"}),
            &Crier.Conn.send_resp(&1, 200, [], ""),
            &Crier.Conn.send_chunked(&1, 200, []),
            &Crier.Conn.send_head(&1, 200, [], 1),
            &Crier.Conn.inform(&1, 103, []),
            &Crier.Conn.read_body(&1),
            &Crier.Conn.on_close(&1, :message)
          ] do
        assert %ArgumentError{message: message} = catch_error(call.(conn))
        assert message =~ "process that owns the conn"
      end

      {:ok, _} = ControlHandler.run(handler, &Crier.Conn.chunk(&1, "from the owner"))
      {:ok, data} = RawClient.read_until(client, "from the owner")
      refute data =~ "from elsewhere"
      refute_received {:crier_msg, ^handler, _, _}
    end
  end

  describe "close detection" do
    test "a client FIN on an idle stream sends {:crier, ref, {:error, :closed}} without a write",
         %{port: port, server: server} do
      {client, handler, conn} = open_stream(port)
      # The head is counted just after its write returns, which may be after the client read
      # it: wait for that count, so what follows compares against a settled figure.
      Wait.until(fn -> Crier.stats(server).bytes_written > 0 end)
      written = Crier.stats(server).bytes_written
      :ok = :gen_tcp.close(client)
      assert_receive {:crier_msg, ^handler, ref, {:error, :closed}}, 1_000
      assert ref == conn.ref
      assert Crier.stats(server).bytes_written == written
      assert {:error, :closed} = ControlHandler.run(handler, &Crier.Conn.chunk(&1, "late"))
      assert {:error, :closed} = ControlHandler.run(handler, &Crier.Conn.chunk(&1, "later"))
      refute_receive {:crier_msg, ^handler, _, _}, 50
    end

    test "a client RST is reported the same way", %{port: port} do
      {client, handler, conn} = open_stream(port)
      RawClient.reset(client)
      ref = conn.ref
      assert_receive {:crier_msg, ^handler, ^ref, {:error, :closed}}, 1_000
    end

    test "killing the owner closes the socket and leaves nothing in Rust", %{
      port: port,
      server: server
    } do
      {client, handler, _conn} = open_stream(port)
      Process.exit(handler, :kill)
      assert {:closed, _} = RawClient.read_to_close(client)
      Wait.until(fn -> Crier.stats(server).connections == 0 end)
      assert %{tasks: 0, streams: 0} = Crier.stats(server)
    end

    test "the last reference to the conn being collected closes the socket", %{
      port: port,
      server: server
    } do
      client = RawClient.connect(port)
      :ok = RawClient.get(client, "/")
      # Match without binding: this process must not keep the conn alive.
      assert_receive {:called, handler, _}
      started = fn conn -> match?({:ok, _}, Crier.Conn.send_chunked(conn, 200, [])) end
      assert ControlHandler.run(handler, started)
      test = self()

      # A holder takes ownership, the handler dies (no longer the monitored owner), then the
      # holder drops the conn and collects it while staying alive.
      holder = spawn(fn -> hold_then_drop(test) end)
      send(handler, {:run, fn conn -> send(holder, {:conn, conn}) && :ok end})
      assert_receive :owned
      assert_receive {:ran, ^handler, :ok}
      Process.exit(handler, :kill)
      # The handler's death must not close the stream now that the holder owns it.
      refute_receive {:crier_msg, _, _, _}, 100
      assert Crier.stats(server).streams == 1
      # The dispatcher that passed the request on may still hold it until its next
      # collection; collect every process but the holder so its is the last reference.
      for pid <- Process.list(), pid != holder, do: :erlang.garbage_collect(pid)
      send(holder, :drop)
      assert_receive :dropped
      assert {:closed, _} = RawClient.read_to_close(client)
      Wait.until(fn -> Crier.stats(server).connections == 0 end)
      assert Process.alive?(holder)
      Process.exit(holder, :kill)
    end

    @tag timeout: 120_000
    test "500 concurrent streams closed by their clients: 500 messages, nothing leaked",
         %{port: port, server: server} do
      streams = for _ <- 1..500, do: open_stream(port)
      assert Crier.stats(server).streams == 500
      handlers = for {_client, handler, _conn} <- streams, do: handler
      monitors = Map.new(handlers, fn pid -> {Process.monitor(pid), pid} end)
      for {client, _, _} <- streams, do: :gen_tcp.close(client)

      told =
        for _ <- 1..500 do
          assert_receive {:crier_msg, handler, _ref, {:error, :closed}}, 5_000
          send(handler, :return)
          handler
        end

      assert Enum.sort(told) == Enum.sort(handlers)

      for _ <- 1..500 do
        assert_receive {:DOWN, ref, :process, _, :normal}, 5_000
        assert Map.has_key?(monitors, ref)
      end

      Wait.until(fn -> match?(%{connections: 0, tasks: 0, streams: 0}, Crier.stats(server)) end)
      assert Crier.stats(server).closes.closed == 500
    end
  end
end
