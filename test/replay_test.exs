defmodule Crier.ReplayTest do
  @moduledoc """
  `Last-Event-ID` replay through the public API: a topic's ring (the `:replay` server option
  or `set_replay/3`) gives a reconnecting client what it missed, exactly once and in order,
  then the live events, even while a publisher races the reconnects.
  """
  use Crier.Test.TopicCase, async: true

  defp subscribe(port, path, opts), do: TopicHandler.connect_detached(port, path, opts)

  defp publish(server, topic, range) do
    for n <- range, do: :ok = Crier.broadcast(server, topic, %Event{data: "e#{n}"})
  end

  # Gives `topic` a ring of `size` events, then publishes e<n> for each n of `range` on it.
  defp publish_with_ring(server, topic, size, range) do
    :ok = Crier.set_replay(server, topic, size)
    publish(server, topic, range)
  end

  # Subscribes to `path` with `opts` and takes its first `count` events; returns them as
  # `{id, data}` pairs, and the client.
  defp replayed(port, path, opts, count) do
    {events, client} = SseClient.take(subscribe(port, path, opts), count)
    {ids_and_data(events), client}
  end

  defp ids_and_data(events), do: Enum.map(events, &{&1.id, &1.data})

  @tag server_opts: [replay: 50]
  test "the :replay option gives every topic a ring; auto ids count from 1", %{
    server: server,
    port: port
  } do
    publish(server, "t", 1..5)
    {events, client} = replayed(port, "/topics/t", [last_event_id: "2"], 3)
    assert events == [{"3", "e3"}, {"4", "e4"}, {"5", "e5"}]
    publish(server, "t", 6..6)
    assert {:ok, %{id: "6", data: "e6"}, _} = SseClient.next_event(client)
  end

  test "set_replay/3 sizes one topic's ring; the oldest events fall out", %{
    server: server,
    port: port
  } do
    publish_with_ring(server, "small", 2, 1..5)
    # "1" is no longer held: the client gets the whole ring, the most it can still get.
    {events, _} = replayed(port, "/topics/small", [last_event_id: "1"], 2)
    assert events == [{"4", "e4"}, {"5", "e5"}]
  end

  test "the :last_event_id option serves clients that pass the id in the query", %{
    server: server,
    port: port
  } do
    publish_with_ring(server, "q", 10, 1..3)
    {events, _} = replayed(port, "/topics/q?last=1", [], 2)
    assert events == [{"2", "e2"}, {"3", "e3"}]
  end

  test "ids the application gives are kept and replayed after", %{server: server, port: port} do
    :ok = Crier.set_replay(server, "named", 10)

    for id <- ~w(alpha beta gamma),
        do: :ok = Crier.broadcast(server, "named", %Event{id: id, data: id})

    {events, _} = replayed(port, "/topics/named", [last_event_id: "alpha"], 2)
    assert events == [{"beta", "beta"}, {"gamma", "gamma"}]
  end

  test "an up-to-date client gets no replay, only live events", %{server: server, port: port} do
    publish_with_ring(server, "live", 10, 1..3)
    client = subscribe(port, "/topics/live", last_event_id: "3")
    publish(server, "live", 4..4)
    assert {:ok, %{id: "4"}, _} = SseClient.next_event(client)
  end

  test "replay 0 turns it off: ids stay the application's, nothing is replayed", %{
    server: server,
    port: port
  } do
    publish_with_ring(server, "off", 10, 1..3)
    :ok = Crier.set_replay(server, "off", 0)
    client = subscribe(port, "/topics/off", last_event_id: "1")
    publish(server, "off", 4..4)
    assert {:ok, %{id: "", data: "e4"}, _} = SseClient.next_event(client)
  end

  test "a client that reconnects across many broadcasts misses nothing and repeats nothing",
       %{server: server, port: port} do
    # The race the hub's single actor exists for: a publisher broadcasts without pause while
    # clients drop their connection after a varying number of events and come back with
    # Last-Event-ID. Every client must see 1..n, with no gap and no duplicate.
    n = 3_000
    :ok = Crier.set_replay(server, "race", n)

    readers =
      for c <- 1..3 do
        Task.async(fn -> read_all(port, c, n) end)
      end

    publisher =
      Task.async(fn ->
        for i <- 1..n do
          :ok = Crier.broadcast(server, "race", %Event{data: Integer.to_string(i)})
          # Pace the publisher so it races the reconnects over the whole run.
          if rem(i, 20) == 0, do: Process.sleep(1)
        end
      end)

    Task.await(publisher, 60_000)
    reconnects = Enum.map(readers, &Task.await(&1, 60_000))
    assert Enum.all?(reconnects, &(&1 > 20)), inspect(reconnects)
    Wait.until(fn -> Crier.stats(server).subscribers == 0 end)
  end

  # Reads ids 1..n across reconnects; returns how many connections it took. "0" is no id the
  # ring holds, so the first connection gets the ring from its start.
  defp read_all(port, c, n), do: read_all(port, c, n, "0", 1, 0)

  defp read_all(_port, _c, n, _last, expected, connections) when expected > n, do: connections

  defp read_all(port, c, n, last, expected, connections) do
    client = SseClient.connect(port, "/topics/race", last_event_id: last)
    budget = 1 + rem(connections * 7 + c * 13, 61)
    {client, next} = read_some(client, budget, expected, n)
    SseClient.close(client)
    # The id of the last event taken (the parser may hold more it read ahead; a client that
    # drops them asks for them again).
    last = if next > expected, do: Integer.to_string(next - 1), else: last
    read_all(port, c, n, last, next, connections + 1)
  end

  defp read_some(client, 0, expected, _n), do: {client, expected}
  defp read_some(client, _budget, expected, n) when expected > n, do: {client, expected}

  defp read_some(client, budget, expected, n) do
    case SseClient.next_event(client, 10_000) do
      {:ok, event, client} ->
        expected_id = Integer.to_string(expected)

        assert {event.id, event.data} == {expected_id, expected_id},
               "client #{inspect(self())}: gap or duplicate: got #{inspect(event)}, wanted #{expected}"

        read_some(client, budget - 1, expected + 1, n)

      {:closed, client} ->
        {client, expected}

      {:timeout, _client} ->
        flunk("no event #{expected} in time")
    end
  end
end
