defmodule Crier.ClusterReplayTest do
  @moduledoc """
  `Last-Event-ID` replay across a cluster of three real nodes (`:peer`), with real SSE
  clients: one order and one id per event everywhere, exact replay on any node while every
  node publishes, and the `crier-gap` signal where a node cannot prove its replay exact (it
  restarted, the sequencer changed, it joined after the client's id).
  """
  use ExUnit.Case, async: false

  alias Crier.Test.{PeerCluster, SseClient, TopicHandler}

  @moduletag :cluster
  @server :crier_replay_cluster
  @topic "feed"
  @path "/topics/feed"

  setup_all do
    PeerCluster.ensure_distributed!()
    {_, a} = PeerCluster.start_peer!(:crier_ra)
    {_, b} = PeerCluster.start_peer!(:crier_rb, [a])
    {_, c} = PeerCluster.start_peer!(:crier_rc, [a, b])
    %{nodes: [a, b, c]}
  end

  setup %{nodes: nodes} do
    on_exit(fn -> for node <- nodes, do: PeerCluster.stop_server(node, @server) end)
    ports = Map.new(nodes, &{&1, start_server!(&1)})
    sequencer = PeerCluster.await_cluster!(@server, nodes)
    %{ports: ports, sequencer: sequencer}
  end

  test "every node publishing at once: a client moving between nodes gets each event once, " <>
         "in the one order every node delivers",
       %{nodes: nodes, ports: ports} do
    per_node = 300
    total = per_node * length(nodes)
    stayers = for node <- nodes, do: connect(ports[node])
    mover = connect(ports[hd(nodes)])

    publishers =
      for node <- nodes do
        Task.async(fn ->
          :erpc.call(node, PeerCluster, :publish_many, [
            @server,
            @topic,
            Atom.to_string(node),
            1..per_node,
            5
          ])
        end)
      end

    # The mover reads a few events, leaves, and comes back on the next node with its id, over
    # and over, while the publishers run.
    budgets = Stream.cycle([1, 37, 5, 80, 13, 120, 2, 61])
    hops = Stream.cycle(tl(nodes) ++ [hd(nodes)])
    moved = move(mover, Stream.zip(budgets, hops) |> Enum.take(200), ports, total)

    Enum.each(publishers, &Task.await(&1, 30_000))
    seen = for stayer <- stayers, do: stayer |> SseClient.take(total) |> elem(0)

    # One order, one id per event: every node's stream is the same, byte for byte.
    assert [reference | _] = seen
    assert Enum.all?(seen, &(&1 == reference))
    assert Enum.all?(reference, &(&1.type == "message"))
    assert length(Enum.uniq_by(reference, & &1.id)) == total

    # The mover, across all its nodes, got exactly that: nothing lost, nothing twice.
    assert Enum.map(moved.events, &{&1.id, &1.data}) == Enum.map(reference, &{&1.id, &1.data})
    assert moved.hops > 10

    # Each publisher's events in the order it published them.
    for node <- nodes do
      mine = Enum.filter(data(reference), &String.starts_with?(&1, "#{node}:"))
      assert mine == Enum.map(1..per_node, &"#{node}:#{&1}")
    end
  end

  test "a restarted node replays only what it can prove; an older id gets the gap signal", %{
    nodes: nodes,
    ports: ports,
    sequencer: sequencer
  } do
    [restarted, publisher | _] = Enum.reject(nodes, &(&1 == sequencer)) ++ [sequencer]
    watcher = connect(ports[publisher])
    client = connect(ports[restarted])
    publish(publisher, "e", 1..10)
    {before, _} = SseClient.take(client, 10)
    gone_at = List.last(before).id

    PeerCluster.stop_server(restarted, @server)
    publish(publisher, "e", 11..20)
    # Once the watcher has e:20, the sequencer has sent it: the restarted node will not.
    {seen_by_watcher, _} = SseClient.take(watcher, 20)
    before_restart = List.last(seen_by_watcher).id
    port = start_server!(restarted)
    PeerCluster.await_cluster!(@server, nodes)
    live = connect(port)
    publish(publisher, "e", 21..30)
    {fresh, _} = SseClient.take(live, 10)
    assert data(fresh) == Enum.map(21..30, &"e:#{&1}")

    # The client left at e:10; the restarted node holds e:21 on only: it cannot replay
    # e:11..20, so it says so, with the id the stream continues from, and replays nothing.
    back = connect(port, gone_at)

    assert {:ok, %{type: "crier-gap", data: "behind", id: continues_at}, back} =
             SseClient.next_event(back)

    assert continues_at == List.last(fresh).id
    publish(publisher, "e", 31..31)
    assert {:ok, %{data: "e:31"}, _} = SseClient.next_event(back)

    # A client that had e:20 (from another node) misses nothing the restarted node holds.
    {replayed, _} = connect(port, before_restart) |> SseClient.take(11)
    assert data(replayed) == Enum.map(21..31, &"e:#{&1}")
  end

  test "a sequencer that stops hands over: the next epoch follows on with no gap", context do
    %{ports: ports, sequencer: sequencer} = context
    {survivor, others, firsts, old, old_epoch} = live_on_followers(context)
    PeerCluster.stop_server(sequencer, @server)
    assert PeerCluster.await_cluster!(@server, others) != sequencer
    publish(survivor, "e", 6..7)

    # Live streams go straight on into the new epoch.
    for {_, client} <- firsts do
      assert {[six, seven], _} = SseClient.take(client, 2)

      assert {data(six, seven), PeerCluster.position(seven.id)} ==
               {["e:6", "e:7"], {elem_epoch(six), 2}}

      assert elem_epoch(six) > old_epoch
    end

    # An id of the old epoch replays exactly across the two, on any node.
    for node <- others do
      {replayed, _} = connect(ports[node], Enum.at(old, 2).id) |> SseClient.take(4)
      assert data(replayed) == ["e:4", "e:5", "e:6", "e:7"]
    end
  end

  test "a sequencer that dies: a new epoch, and live streams and old ids get the gap", context do
    %{nodes: nodes, ports: ports, sequencer: sequencer} = context
    {survivor, others, firsts, old, old_epoch} = live_on_followers(context)

    # Killed: no handover. Its supervisor starts it again, as a follower.
    server = :erpc.call(sequencer, Process, :whereis, [@server])
    :erpc.call(sequencer, Process, :exit, [server, :kill])
    PeerCluster.await_cluster!(@server, nodes)
    publish(survivor, "e", 6..6)

    for {_, client} <- firsts do
      assert {:ok, %{type: "crier-gap", data: "epoch", id: id}, client} =
               SseClient.next_event(client)

      assert {:ok, %{data: "e:6", id: next_id}, _} = SseClient.next_event(client)
      {epoch, 0} = PeerCluster.position(id)
      assert epoch > old_epoch
      assert PeerCluster.position(next_id) == {epoch, 1}
    end

    # An id of the old epoch is never replayed against the new one, on any node.
    for node <- others do
      client = connect(ports[node], List.last(old).id)
      assert {:ok, %{type: "crier-gap", data: "epoch"}, _} = SseClient.next_event(client)
    end
  end

  test "a node that joins late replays exactly from where it joined and disturbs no one", %{
    nodes: [a, b, _] = nodes,
    ports: ports
  } do
    stayers = [connect(ports[a]), connect(ports[b])]
    publish(a, "e", 1..10)
    # Once they are delivered, the late node cannot receive them.
    stayers = for stayer <- stayers, do: SseClient.take(stayer, 10)
    {peer, late} = PeerCluster.start_peer!(:crier_late, nodes)
    late_port = start_server!(late)
    PeerCluster.await_cluster!(@server, [late | nodes])
    publish(b, "e", 11..20)

    [seen, seen_b] =
      for {first, stayer} <- stayers, do: first ++ elem(SseClient.take(stayer, 10), 0)

    assert seen == seen_b
    assert data(seen) == Enum.map(1..20, &"e:#{&1}")

    # The late node received e:11 on; a client that had e:12 elsewhere gets e:13..20 there.
    {replayed, _} = connect(late_port, Enum.at(seen, 11).id) |> SseClient.take(8)
    assert Enum.map(replayed, & &1.id) == Enum.map(Enum.drop(seen, 12), & &1.id)

    # One that left at e:5 is told the late node cannot give it e:6..10.
    old = connect(late_port, Enum.at(seen, 4).id)
    assert {:ok, %{type: "crier-gap", data: "behind"}, _} = SseClient.next_event(old)
    :ok = :peer.stop(peer)
  end

  test "random publish and reconnect schedules keep the guarantee", %{
    nodes: nodes,
    ports: ports
  } do
    # A seeded schedule of bursts from random nodes, hops of a client to random nodes after
    # random reads, restarts of a follower, and a sequencer that stops (a handover) or is
    # killed (a new epoch with no handover). Whatever happens, the client's
    # events grow strictly in (epoch, seq), and within one epoch with no gap signal between
    # them they are consecutive: it never misses an event silently and never sees one twice.
    Enum.reduce(1..3, ports, fn seed, ports ->
      :rand.seed(:exsss, {seed, 13, 1})
      run_schedule(nodes, ports, 12)
    end)
  end

  defp run_schedule(nodes, ports, steps) do
    state = %{ports: ports, published: 0, client: connect(ports[hd(nodes)]), received: []}

    state =
      Enum.reduce(1..steps, state, fn _, state ->
        case :rand.uniform(8) do
          n when n <= 3 -> burst(state, Enum.random(nodes))
          n when n <= 5 -> hop(state, Enum.random(nodes))
          6 -> restart(state, nodes, :follower)
          7 -> restart(state, nodes, :sequencer)
          8 -> restart(state, nodes, :kill)
        end
      end)

    # Finally everything published reaches the client (or it was told of a gap).
    state = burst(state, Enum.random(nodes))
    state = read_until_last(state)
    check_guarantee(Enum.reverse(state.received))
    SseClient.close(state.client)
    state.ports
  end

  defp burst(state, node) do
    count = :rand.uniform(30)
    from = state.published + 1
    publish(node, "r", from..(from + count - 1))
    %{state | published: state.published + count}
  end

  defp hop(state, node) do
    {events, client} = read_some(state.client, :rand.uniform(20))
    SseClient.close(client)
    received = Enum.reverse(events, state.received)
    last = Enum.find_value(received, fn event -> event.id != "" and event.id end)
    %{state | client: connect(state.ports[node], last), received: received}
  end

  defp restart(state, nodes, which) do
    sequencer = PeerCluster.await_cluster!(@server, nodes)

    {node, port} =
      case which do
        :follower ->
          node = nodes |> Enum.reject(&(&1 == sequencer)) |> Enum.random()
          PeerCluster.stop_server(node, @server)
          {node, start_server!(node)}

        :sequencer ->
          PeerCluster.stop_server(sequencer, @server)
          {sequencer, start_server!(sequencer)}

        :kill ->
          # Its supervisor starts it again.
          pid = :erpc.call(sequencer, Process, :whereis, [@server])
          :erpc.call(sequencer, Process, :exit, [pid, :kill])
          PeerCluster.await_cluster!(@server, nodes)
          {sequencer, :erpc.call(sequencer, Crier, :port, [@server])}
      end

    PeerCluster.await_cluster!(@server, nodes)
    state = %{state | ports: Map.put(state.ports, node, port)}
    # The client may have been on it: it comes back with its last id, here or elsewhere.
    hop(state, Enum.random(nodes))
  end

  # Takes up to `n` events, fewer if none comes for a while (the client is up to date).
  defp read_some(client, n), do: read_some(client, n, [])
  defp read_some(client, 0, acc), do: {Enum.reverse(acc), client}

  defp read_some(client, n, acc) do
    case SseClient.next_event(client, 100) do
      {:ok, event, client} -> read_some(client, n - 1, [event | acc])
      {_, client} -> {Enum.reverse(acc), client}
    end
  end

  defp read_until_last(state) do
    last = "r:#{state.published}"

    case state.received do
      [%{data: ^last} | _] ->
        state

      _ ->
        assert {:ok, event, client} = SseClient.next_event(state.client)
        read_until_last(%{state | client: client, received: [event | state.received]})
    end
  end

  defp check_guarantee(events) do
    Enum.reduce(events, {nil, :gap}, fn
      %{type: "crier-gap"}, {last, _} ->
        {last, :gap}

      %{id: id} = event, {last, since} ->
        {epoch, seq} = position = PeerCluster.position(id)
        assert last == nil or position > last, "not after #{inspect(last)}: #{inspect(event)}"

        if since == :no_gap and elem(last, 0) == epoch do
          assert seq == elem(last, 1) + 1, "missed before #{inspect(event)}"
        end

        {position, :no_gap}
    end)
  end

  # A live stream on each follower node, which has taken e:1..5 (published by a follower).
  # Returns that follower, the followers, the streams, the first one's events and their epoch.
  defp live_on_followers(%{nodes: nodes, ports: ports, sequencer: sequencer}) do
    [survivor | _] = others = Enum.reject(nodes, &(&1 == sequencer))
    live = for node <- others, do: connect(ports[node])
    publish(survivor, "e", 1..5)
    firsts = for client <- live, do: SseClient.take(client, 5)
    [{old, _} | _] = firsts
    {old_epoch, 5} = PeerCluster.position(List.last(old).id)
    {survivor, others, firsts, old, old_epoch}
  end

  defp elem_epoch(event), do: event.id |> PeerCluster.position() |> elem(0)

  defp data(first, second), do: [first.data, second.data]

  defp data(events), do: Enum.map(events, & &1.data)

  defp publish(node, tag, range) do
    :ok = :erpc.call(node, PeerCluster, :publish_many, [@server, @topic, tag, range])
  end

  defp start_server!(node), do: PeerCluster.start_server!(node, @server, self(), replay: 2_000)

  defp connect(port, last_event_id \\ nil) do
    opts = if last_event_id, do: [last_event_id: last_event_id], else: []
    TopicHandler.connect_detached(port, @path, opts)
  end

  # Reads `budget` events on each node of `schedule` in turn, coming back with the last id
  # each time, until `total` events are in. Returns the events and the number of hops.
  defp move(client, schedule, ports, total) do
    Enum.reduce_while(schedule, %{client: client, events: [], hops: 0}, fn {budget, next}, acc ->
      left = total - length(acc.events)
      {taken, client} = SseClient.take(acc.client, min(budget, left), 10_000)
      SseClient.close(client)
      events = acc.events ++ taken

      if length(events) == total do
        {:halt, %{acc | events: events}}
      else
        client = connect(ports[next], List.last(events).id)
        {:cont, %{acc | client: client, events: events, hops: acc.hops + 1}}
      end
    end)
  end
end
