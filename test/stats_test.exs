defmodule Crier.StatsTest do
  @moduledoc """
  `Crier.stats/1`: gauges (connections, streams, subscribers, queued bytes), totals
  (requests, bytes written) and closes counted by reason, read from Rust counters.
  """
  # Not async: megabytes cross loopback here, which would slow other modules' tests.
  use ExUnit.Case, async: false

  alias Crier.Test.{FunHandler, RawClient, Wait}

  # The handler serves by path: /plain answers, /stream streams until told, /subscribe hands
  # its stream to a topic and returns, /big queues more than a stalled client takes.
  defp handler(test) do
    fn conn ->
      case conn.path do
        "/plain" ->
          Crier.Conn.send_resp(conn, 200, [], "plain")

        "/stream" ->
          {:ok, conn} = Crier.sse(conn)
          {:ok, conn} = Crier.send_event(conn, %Crier.Event{data: "hello"})
          send(test, {:streaming, self()})
          ref = conn.ref

          receive do
            {:crier, ^ref, {:error, reason}} -> send(test, {:owner_told, reason})
          end

        "/subscribe" ->
          {:ok, conn} = Crier.sse(conn)
          :ok = Crier.subscribe(conn, conn.query)
          send(test, :subscribed)

        "/big" ->
          {:ok, conn} = Crier.Conn.send_chunked(conn, 200, [])
          {:ok, _conn} = Crier.Conn.chunk(conn, :binary.copy("b", 8 * 1024 * 1024))
          send(test, :big_queued)

          receive do
            {:crier, _, {:error, reason}} -> send(test, {:owner_told, reason})
          end
      end
    end
  end

  defp request(port, path, opts \\ []) do
    {:ok, client} =
      :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false] ++ opts, 5_000)

    :ok = RawClient.get(client, path)
    client
  end

  defp stats_when(name, check) do
    Wait.until(fn -> (stats = Crier.stats(name)) && check.(stats) && stats end)
  end

  test "a fresh server counts nothing" do
    {name, _port} = FunHandler.start_server(handler(self()))

    assert %{
             connections: 0,
             streams: 0,
             subscribers: 0,
             topics: 0,
             requests: 0,
             rejected: 0,
             bytes_written: 0,
             queued_bytes: 0,
             closes: %{closed: 0, timeout: 0, overflow: 0, shutdown: 0, owner_gone: 0}
           } = Crier.stats(name)
  end

  test "connections, streams, subscribers and bytes written follow real clients" do
    test = self()
    topic = "stats-#{System.unique_integer([:positive])}"
    {name, port} = FunHandler.start_server(handler(test), heartbeat: nil)

    plain = request(port, "/plain")
    {:ok, plain_data} = RawClient.read_until(plain, "\r\n\r\nplain")
    streams = for _ <- 1..2, do: request(port, "/stream")
    for _ <- 1..2, do: assert_receive({:streaming, _}, 5_000)
    subscriber = request(port, "/subscribe?#{topic}")
    assert_receive :subscribed, 5_000

    # The topic is counted by the hub's task, a moment after the subscription.
    stats = stats_when(name, &(&1.streams == 3 and &1.topics == 1 and &1.queued_bytes == 0))
    assert %{connections: 4, requests: 4, subscribers: 1} = stats

    received =
      for client <- streams do
        {:ok, data} = RawClient.read_until(client, "data: hello\n\n\r\n")
        data
      end

    {:ok, sub_data} = RawClient.read_until(subscriber, "\r\n\r\n")
    total = Enum.map([plain_data, sub_data | received], &byte_size/1) |> Enum.sum()
    # Every byte the server wrote was read by these clients.
    assert Crier.stats(name).bytes_written == total

    for client <- [plain, subscriber | streams], do: :gen_tcp.close(client)

    stats = stats_when(name, &(&1.connections == 0))
    assert %{streams: 0, subscribers: 0, queued_bytes: 0} = stats
    # Three streams closed by their clients; a plain response is no stream.
    assert stats.closes.closed == 3
  end

  test "closes are counted by reason" do
    test = self()
    topic = "stats-#{System.unique_integer([:positive])}"

    {name, port} =
      FunHandler.start_server(handler(test),
        heartbeat: nil,
        send_timeout: 200,
        write_queue_bytes: 64 * 1024
      )

    resource = Crier.Server.resource!(name)

    # closed: the client leaves.
    client = request(port, "/stream")
    assert_receive {:streaming, _}, 5_000
    :gen_tcp.close(client)
    assert_receive {:owner_told, :closed}, 5_000

    # timeout: nothing moves for send_timeout.
    stalled = request(port, "/big", recbuf: 4096)
    assert_receive :big_queued, 5_000
    assert_receive {:owner_told, :timeout}, 5_000

    # owner_gone: the owner dies.
    orphan = request(port, "/stream")
    assert_receive {:streaming, owner}, 5_000
    Process.exit(owner, :kill)
    assert {:closed, _} = RawClient.read_to_close(orphan)

    # overflow: a subscriber that does not read falls behind a broadcast.
    slow = request(port, "/subscribe?#{topic}", recbuf: 4096)
    assert_receive :subscribed, 5_000
    big = %Crier.Event{data: String.duplicate("o", 32 * 1024)}

    Wait.until(fn ->
      :ok = Crier.broadcast(name, topic, big)
      Crier.stats(name).closes.overflow == 1
    end)

    # shutdown: the server stops with a stream open.
    last = request(port, "/stream")
    assert_receive {:streaming, _}, 5_000
    stop_supervised!({Crier, name})
    assert_receive {:owner_told, :shutdown}, 5_000

    assert %{closed: 1, timeout: 1, owner_gone: 1, overflow: 1, shutdown: 1} =
             Crier.Native.server_stats(resource).closes

    for c <- [stalled, slow, last], do: :gen_tcp.close(c)
  end
end
