defmodule Crier.ClusterTest do
  @moduledoc """
  Cluster fan-out with real nodes: the test starts two peer nodes (`:peer`), each running
  its own Crier listener, and real SSE clients connect to each. An event broadcast on node A
  with `cluster: true` reaches the clients of node B through `:pg`; one without it stays on A.
  """
  use ExUnit.Case, async: false

  alias Crier.Event
  alias Crier.Test.{PeerCluster, SseClient, Wait}

  @moduletag :cluster
  @server :crier_cluster_test

  setup_all do
    PeerCluster.ensure_distributed!()
    {_, a} = PeerCluster.start_peer!(:crier_a)
    {_, b} = PeerCluster.start_peer!(:crier_b, [a])
    %{a: a, b: b}
  end

  setup %{a: a, b: b} do
    test = self()
    port_a = PeerCluster.start_server!(a, @server, test)
    port_b = PeerCluster.start_server!(b, @server, test)
    on_exit(fn -> for node <- [a, b], do: PeerCluster.stop_server(node, @server) end)
    PeerCluster.await_cluster!(@server, [a, b])

    # Every test starts with one client of each node subscribed to "room".
    %{client_a: subscribe(port_a, a), client_b: subscribe(port_b, b)}
  end

  test "an event published on node A with cluster: true reaches a client of node B", %{
    a: a,
    client_a: client_a,
    client_b: client_b
  } do
    event = %Event{id: "c1", event: "news", data: "from A\nto everyone ✓"}
    :ok = :erpc.call(a, Crier, :broadcast, [@server, "room", event, [cluster: true]])

    for client <- [client_a, client_b] do
      assert {:ok, %{type: "news", data: "from A\nto everyone ✓", id: "c1"}, _} =
               SseClient.next_event(client)
    end
  end

  test "without cluster: true an event stays on its node; with it, each node gets it once", %{
    a: a,
    b: b,
    client_a: client_a,
    client_b: client_b
  } do
    :ok = :erpc.call(a, Crier, :broadcast, [@server, "room", %Event{data: "local"}])

    :ok =
      :erpc.call(a, Crier, :broadcast, [
        @server,
        "room",
        %Event{data: "everywhere"},
        [cluster: true]
      ])

    assert {:ok, %{data: "local"}, client_a} = SseClient.next_event(client_a)
    assert {:ok, %{data: "everywhere"}, _} = SseClient.next_event(client_a)
    # B's first event is the cluster one: the local one never left A.
    assert {:ok, %{data: "everywhere"}, client_b} = SseClient.next_event(client_b)

    # And it came once: the next thing B sees is the next broadcast.
    :ok =
      :erpc.call(b, Crier, :broadcast, [@server, "room", %Event{data: "from B"}, [cluster: true]])

    assert {:ok, %{data: "from B"}, _} = SseClient.next_event(client_b)
  end

  test "a cluster broadcast that cannot be sent raises in the caller, and nothing is sent", %{
    a: a,
    client_b: client_b
  } do
    for {topic, event} <- [{"room", %Event{id: "a\nb", data: "x"}}, {<<0xFF>>, %Event{data: "x"}}] do
      assert_raise ErlangError, ~r/ArgumentError/, fn ->
        :erpc.call(a, Crier, :broadcast, [@server, topic, event, [cluster: true]])
      end
    end

    :ok = :erpc.call(a, Crier, :broadcast, [@server, "room", %Event{data: "ok"}, [cluster: true]])
    assert {:ok, %{data: "ok"}, _} = SseClient.next_event(client_b)
  end

  test "a server survives cluster messages it does not expect and goes on serving", %{
    a: a,
    b: b,
    client_b: client_b
  } do
    server = :erpc.call(a, Process, :whereis, [@server])

    for junk <- [
          {:crier_cluster, :junk},
          {:crier_cluster, {:event, "e", -1, "room", %{}}},
          {:crier_cluster, {:event, 1, 2, :room, %{}}},
          {:crier_cluster, {:publish, :room, "x"}},
          {:crier_cluster, {:epoch_start, 5, {1, -1}, self()}},
          {:crier_cluster, {:epoch_behind, "x"}},
          {:crier_cluster, {:epoch_end, "x", 1}},
          {:crier_cluster, {:sequencer_down, make_ref()}},
          {{:crier_cluster, :sequencer_down}, make_ref(), :process, self(), :normal}
        ],
        do: send(server, junk)

    :ok =
      :erpc.call(a, Crier, :broadcast, [@server, "room", %Event{data: "still"}, [cluster: true]])

    assert {:ok, %{data: "still"}, _} = SseClient.next_event(client_b)
    assert :erpc.call(a, Process, :whereis, [@server]) == server
    assert PeerCluster.await_cluster!(@server, [a, b])
  end

  test "a node that saw a newer epoch than the sequencer's makes it start a newer one",
       context do
    %{a: a, b: b} = context
    sequencer = PeerCluster.await_cluster!(@server, [a, b])
    {follower, client} = if sequencer == a, do: {b, context.client_b}, else: {a, context.client_a}
    sequencer_pid = :erpc.call(sequencer, Process, :whereis, [@server])
    {:sequencing, epoch, _} = :erpc.call(sequencer, :sys, :get_state, [@server]).cluster.role

    # The follower heard from a sequencer whose clock ran an hour ahead: it drops this
    # sequencer's events as stale, and says so.
    ahead = epoch + 3_600_000_000
    follower_pid = :erpc.call(follower, Process, :whereis, [@server])
    send(follower_pid, {:crier_cluster, {:epoch_start, ahead, nil, self()}})
    # Called from here, so it is handled after the message above.
    assert :sys.get_state(follower_pid).cluster.last_epoch == ahead

    :ok =
      :erpc.call(a, Crier, :broadcast, [@server, "room", %Event{data: "stale"}, [cluster: true]])

    Wait.until(fn ->
      match?(
        {:sequencing, renewed, _} when renewed > ahead,
        :erpc.call(sequencer, :sys, :get_state, [@server]).cluster.role
      )
    end)

    :ok =
      :erpc.call(a, Crier, :broadcast, [@server, "room", %Event{data: "after"}, [cluster: true]])

    assert [%{data: "after", id: id} | gaps] = events_until(client, "after", [])
    assert gaps != [] and Enum.all?(gaps, &(&1.type == "crier-gap"))
    assert elem(PeerCluster.position(id), 0) > ahead

    # And when it announces an epoch older than one a node has seen, it is told at once.
    {:sequencing, renewed, _} = :erpc.call(sequencer, :sys, :get_state, [@server]).cluster.role
    send(follower_pid, {:crier_cluster, {:epoch_start, renewed + 3_600_000_000, nil, self()}})
    assert :sys.get_state(follower_pid).cluster.last_epoch == renewed + 3_600_000_000
    send(sequencer_pid, {:crier_cluster, :renew_epoch})

    Wait.until(fn ->
      match?(
        {:sequencing, again, _} when again > renewed + 3_600_000_000,
        :erpc.call(sequencer, :sys, :get_state, [@server]).cluster.role
      )
    end)
  end

  test "servers that were not told of a change of name holder catch up by themselves", %{
    a: a,
    b: b,
    client_b: client_b
  } do
    sequencer = PeerCluster.await_cluster!(@server, [a, b])
    [follower] = [a, b] -- [sequencer]
    key = {Crier.Cluster, @server}
    sequencer_pid = :erpc.call(sequencer, Process, :whereis, [@server])
    follower_pid = :erpc.call(follower, Process, :whereis, [@server])

    # The name vanishes: its sequencer takes it back.
    :erpc.call(sequencer, :global, :unregister_name, [key])
    Wait.until(fn -> :erpc.call(follower, :global, :whereis_name, [key]) == sequencer_pid end)

    # The name moves to the follower behind both servers' backs: the former sequencer follows
    # it, and broadcasts still reach everyone.
    :erpc.call(sequencer, :global, :unregister_name, [key])
    :yes = :erpc.call(follower, :global, :register_name, [key, follower_pid])
    role = fn node -> :erpc.call(node, :sys, :get_state, [@server]).cluster.role end

    Wait.until(fn ->
      match?({:sequencing, _, _}, role.(follower)) and
        match?({:following, ^follower_pid, _}, role.(sequencer))
    end)

    :ok =
      :erpc.call(a, Crier, :broadcast, [@server, "room", %Event{data: "still"}, [cluster: true]])

    assert [%{data: "still"} | _] = events_until(client_b, "still", [])
  end

  # The events up to the first with `data`, newest first.
  defp events_until(client, data, seen) do
    assert {:ok, event, client} = SseClient.next_event(client)
    if event.data == data, do: [event | seen], else: events_until(client, data, [event | seen])
  end

  defp subscribe(port, node) do
    client = SseClient.connect(port, "/topics/room")
    assert_receive {:detached, handler, _ref}, 5_000
    assert node(handler) == node
    Wait.until(fn -> :erpc.call(node, Crier, :stats, [@server]).subscribers == 1 end)
    client
  end
end
