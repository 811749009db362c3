defmodule Crier.ShutdownTest do
  @moduledoc """
  Graceful shutdown, by stopping the server's supervisor child: it stops accepting, sends
  SSE streams the optional final event, lets queues drain for `:shutdown_timeout`, closes
  what is left, and tells owners `{:error, :shutdown}`.
  """
  # Not async: megabytes cross loopback here, which would slow other modules' tests.
  use ExUnit.Case, async: false

  alias Crier.Test.{FunHandler, RawClient, Wait}

  @events 8_000
  @final %Crier.Event{event: "bye", data: "server stopping"}

  defp event(i), do: %Crier.Event{id: Integer.to_string(i), data: String.duplicate("z", 1_000)}

  defp encoded(event), do: event |> Crier.Event.encode() |> IO.iodata_to_binary()

  defp forward_close(ref, test) do
    receive do
      {:crier, ^ref, {:error, reason}} -> send(test, {:owner_told, reason})
    end
  end

  # Reads everything until the server closes the connection.
  defp read_all(client, acc \\ []) do
    case :gen_tcp.recv(client, 0, 15_000) do
      {:ok, data} -> read_all(client, [acc | data])
      {:error, :closed} -> IO.iodata_to_binary(acc)
    end
  end

  defp slow_client(port) do
    {:ok, client} =
      :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, recbuf: 8192], 5_000)

    :ok = RawClient.get(client, "/")
    client
  end

  # The listener ends its terminate, and the dispatchers then end the request processes,
  # once Rust says the shutdown is over: that word must come behind every owner's
  # `:shutdown`, which reaches owners through their dispatcher's relay.
  test "the end of the shutdown comes through the relay, behind every owner's close" do
    options = Crier.Options.validate!(name: :shutdown_order, handler: FunHandler, port: 0).native

    relay = Crier.Test.Relay.open()
    {:ok, server} = Crier.Native.server_start(options, self(), [elem(relay, 0)])
    client = RawClient.connect(Crier.Native.server_port(server))
    :ok = RawClient.get(client, "/")
    [{conn, request}] = Crier.Test.Relay.requests(relay, 1)
    :ok = Crier.Native.conn_set_owner(conn, self(), :message)
    :ok = Crier.Native.conn_send_chunked(conn, 200, [], true)
    ref = elem(request, 0)

    Crier.Native.server_shutdown(server, nil)
    assert [{:crier, ^ref, {:error, :shutdown}}, :crier_stopped] = take_until_stopped(relay, [])
  end

  # Takes the relay at each bell until `:crier_stopped` comes; returns what this process
  # was sent, in the order it came.
  defp take_until_stopped({relay, bell} = both, seen) do
    receive do
      {:udp, ^bell, _, _, _} ->
        {_left, []} = Crier.Native.relay_take(relay)
        take_until_stopped(both, seen)

      :crier_stopped ->
        Enum.reverse([:crier_stopped | seen])

      {:crier, _, _} = told ->
        take_until_stopped(both, [told | seen])
    after
      5_000 -> flunk("no :crier_stopped; seen #{inspect(Enum.reverse(seen))}")
    end
  end

  test "events queued just before shutdown all reach a client that keeps reading" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Crier.sse(conn)

          conn =
            Enum.reduce(1..@events, conn, fn i, conn ->
              {:ok, conn} = Crier.send_event(conn, event(i))
              conn
            end)

          send(test, :queued)
          forward_close(conn.ref, test)
        end,
        write_queue_bytes: 64 * 1024 * 1024,
        final_event: @final,
        shutdown_timeout: 10_000
      )

    client = slow_client(port)
    assert_receive :queued, 10_000
    # More than the kernel takes: the stop really finds bytes queued in Rust.
    assert Crier.stats(name).queued_bytes > 0

    reader = Task.async(fn -> read_all(client) end)
    stop_supervised!({Crier, name})

    {200, _headers, body} = reader |> Task.await(20_000) |> RawClient.parse_response()
    {events, complete?} = RawClient.dechunk(body)
    expected = IO.iodata_to_binary([Enum.map(1..@events, &encoded(event(&1))), encoded(@final)])
    assert byte_size(events) == byte_size(expected)
    assert events == expected
    assert complete?, "the chunked body lacks its last chunk"
    assert_receive {:owner_told, :shutdown}, 5_000

    assert {:error, :econnrefused} =
             :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 1_000)
  end

  test "a client that stops reading is cut after shutdown_timeout; owners may queue nothing more" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, conn} = Crier.sse(conn)
          {:ok, conn} = Crier.Conn.chunk(conn, :binary.copy("w", 8 * 1024 * 1024))
          send(test, :queued)
          send(test, {:chunk_after_stop, keep_sending(conn)})
          forward_close(conn.ref, test)
        end,
        write_queue_bytes: 64 * 1024 * 1024,
        shutdown_timeout: 300
      )

    client = slow_client(port)
    assert_receive :queued, 10_000
    stop_supervised!({Crier, name})

    assert_receive {:chunk_after_stop, {:error, :closed}}, 5_000
    assert_receive {:owner_told, :shutdown}, 5_000
    :gen_tcp.close(client)
  end

  # Sends small events until the stream refuses them (the drain started).
  defp keep_sending(conn) do
    case Crier.send_event(conn, %Crier.Event{data: "more"}) do
      {:ok, conn} ->
        receive do
        after
          5 -> keep_sending(conn)
        end

      error ->
        error
    end
  end

  # A server whose handler subscribes each stream to `topic` and returns.
  defp subscribing_server(topic) do
    test = self()

    FunHandler.start_server(
      fn conn ->
        {:ok, conn} = Crier.sse(conn)
        :ok = Crier.subscribe(conn, topic)
        send(test, :subscribed)
      end,
      final_event: @final
    )
  end

  test "a subscribed stream, with no owner left, gets the final event and its last chunk" do
    topic = "shutdown-#{System.unique_integer([:positive])}"
    {name, port} = subscribing_server(topic)
    client = slow_client(port)
    assert_receive :subscribed, 5_000
    :ok = Crier.broadcast(name, topic, %Crier.Event{data: "live"})
    {:ok, before} = RawClient.read_until(client, "data: live\n\n\r\n")
    stop_supervised!({Crier, name})

    {:closed, rest} = RawClient.read_to_close(client)
    {200, _, body} = RawClient.parse_response(before <> rest)
    live = encoded(%Crier.Event{data: "live"})
    assert RawClient.dechunk(body) == {live <> encoded(@final), true}
  end

  # Issue 10, finding 1: broadcasts still queued for the hub when the stop came were lost,
  # while the final event and a clean last chunk said nothing was missing.
  test "every broadcast that returned before the stop reaches every subscriber before the final event" do
    topic = "before-stop-#{System.unique_integer([:positive])}"
    {name, port} = subscribing_server(topic)
    # As many as it was found with: the hub is still fanning out when the stop comes.
    clients = for _ <- 1..1000, do: slow_client(port)

    for _ <- clients, do: assert_receive(:subscribed, 5_000)
    Wait.until(fn -> Crier.subscribers(name, topic) == 1000 end, 20_000)
    readers = Enum.map(clients, fn client -> Task.async(fn -> read_all(client) end) end)
    for i <- 1..200, do: :ok = Crier.broadcast(name, topic, %Crier.Event{data: "#{i}"})
    stop_supervised!({Crier, name})

    expected =
      IO.iodata_to_binary([
        Enum.map(1..200, &encoded(%Crier.Event{data: "#{&1}"})),
        encoded(@final)
      ])

    for reader <- readers do
      {200, _, body} = reader |> Task.await(20_000) |> RawClient.parse_response()
      assert RawClient.dechunk(body) == {expected, true}
    end
  end

  test "owners with on_close: :exit end with {:shutdown, :shutdown}" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          {:ok, _conn} = Crier.sse(conn)
          send(test, {:owner, self()})

          receive do
          after
            30_000 -> :ok
          end
        end,
        on_close: :exit
      )

    clients = for _ <- 1..3, do: slow_client(port)

    owners =
      for _ <- 1..3 do
        assert_receive {:owner, owner}, 5_000
        {owner, Process.monitor(owner)}
      end

    stop_supervised!({Crier, name})

    for {owner, ref} <- owners do
      assert_receive {:DOWN, ^ref, :process, ^owner, {:shutdown, :shutdown}}, 5_000
    end

    Enum.each(clients, &:gen_tcp.close/1)
  end

  test "idle keep-alive connections and waiting owners all end; the server stops" do
    test = self()

    {name, port} =
      FunHandler.start_server(
        fn conn ->
          if conn.path == "/plain" do
            Crier.Conn.send_resp(conn, 200, [], "ok")
          else
            {:ok, conn} = Crier.sse(conn)
            send(test, :streaming)
            forward_close(conn.ref, test)
          end
        end,
        final_event: @final
      )

    idle = RawClient.connect(port)
    :ok = RawClient.get(idle, "/plain")
    {:ok, _} = RawClient.read_until(idle, "\r\n\r\nok")
    streams = for _ <- 1..3, do: slow_client(port)
    for _ <- 1..3, do: assert_receive(:streaming, 5_000)

    stop_supervised!({Crier, name})

    for _ <- 1..3, do: assert_receive({:owner_told, :shutdown}, 5_000)
    assert {:closed, ""} = RawClient.read_to_close(idle)

    for client <- streams do
      {:closed, response} = RawClient.read_to_close(client)
      {200, _, body} = RawClient.parse_response(response)
      assert RawClient.dechunk(body) == {encoded(@final), true}
    end
  end
end
