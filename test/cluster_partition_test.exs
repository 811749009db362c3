defmodule Crier.ClusterPartitionTest do
  @moduledoc """
  A netsplit among three real nodes (`:peer`, started so that a split stays split until it
  is healed: `dist_auto_connect once`, and without `:global`'s overlapping-partition
  guard, which would split the pair too): each side orders its own events, a client that
  crosses sides gets the `crier-gap` signal and never a wrong replay, and after the heal the
  cluster is in one order again.
  """
  use ExUnit.Case, async: false

  alias Crier.Test.{PeerCluster, SseClient, TopicHandler, Wait}

  @moduletag :cluster
  @server :crier_partition
  @split_args [
    ~c"-kernel",
    ~c"dist_auto_connect",
    ~c"once",
    ~c"-kernel",
    ~c"prevent_overlapping_partitions",
    ~c"false"
  ]

  setup_all do
    PeerCluster.ensure_distributed!()
    {_, a} = PeerCluster.start_peer!(:crier_pa, [], @split_args)
    {_, b} = PeerCluster.start_peer!(:crier_pb, [a], @split_args)
    {_, c} = PeerCluster.start_peer!(:crier_pc, [a, b], @split_args)
    %{nodes: [a, b, c]}
  end

  setup %{nodes: nodes} do
    ports = Map.new(nodes, &{&1, start_server!(&1)})
    sequencer = PeerCluster.await_cluster!(@server, nodes)
    %{ports: ports, sequencer: sequencer}
  end

  test "each side of a netsplit orders its own events; crossing sides gets the gap; " <>
         "after the heal, one order again",
       %{nodes: nodes, ports: ports, sequencer: sequencer} do
    # The lone node is a follower: the pair keeps the sequencer, the lone node elects its own.
    lone = Enum.find(nodes, &(&1 != sequencer))
    pair = nodes -- [lone]
    [on_pair | _] = pair
    live_lone = connect(ports[lone])
    live_pair = connect(ports[on_pair])
    publish(on_pair, "e", 1..3)
    {[_, _, e3], live_lone} = SseClient.take(live_lone, 3)
    {_, live_pair} = SseClient.take(live_pair, 3)

    for node <- pair, do: :erpc.call(lone, :erlang, :disconnect_node, [node])
    PeerCluster.await_cluster!(@server, [lone])
    PeerCluster.await_cluster!(@server, pair)
    publish(lone, "l", 1..3)
    publish(on_pair, "p", 1..3)

    # The lone side: a new epoch with no handover (a gap), then its own events only.
    {[gap | lone_events], live_lone} = SseClient.take(live_lone, 4)
    assert {gap.type, gap.data} == {"crier-gap", "epoch"}
    assert data(lone_events) == ~w(l:1 l:2 l:3)
    # The pair's side goes on in its epoch, with its own events only.
    {pair_events, live_pair} = SseClient.take(live_pair, 3)
    assert data(pair_events) == ~w(p:1 p:2 p:3)

    # Crossing sides: never a wrong replay. An id from before the split is exact where the
    # epoch went on, and a gap where it did not.
    {replayed, _} = connect(ports[on_pair], e3.id) |> SseClient.take(3)
    assert data(replayed) == ~w(p:1 p:2 p:3)

    assert {:ok, %{type: "crier-gap", data: "epoch"}, _} =
             SseClient.next_event(connect(ports[lone], e3.id))

    # The lone side's epoch is newer: the pair waits for it, then gives up with a gap.
    assert {:ok, %{type: "crier-gap", data: "ahead"}, _} =
             SseClient.next_event(connect(ports[on_pair], List.last(lone_events).id))

    # The heal: :global keeps one sequencer, which starts a new epoch past both sides'.
    # (Events it numbers before that, in its old epoch, are stale on the other side: dropped
    # there, and that side's streams get a gap.)
    for node <- pair, do: true = :erpc.call(lone, :net_kernel, :connect_node, [node])
    sequencer = PeerCluster.await_cluster!(@server, nodes)
    {newest, _} = PeerCluster.position(List.last(lone_events).id)

    Wait.until(fn ->
      match?(
        {:sequencing, epoch, _} when epoch > newest,
        :erpc.call(sequencer, :sys, :get_state, [@server]).cluster.role
      )
    end)

    publish(lone, "h", 1..2)
    publish(on_pair, "h", 3..4)

    # Every live stream gets the same events with the same ids after it (a gap first where
    # its node's epoch did not go on), each publisher's in its order; the two publishers'
    # events interleave as they reached the sequencer.
    [after_lone, after_pair] =
      for client <- [live_lone, live_pair] do
        client |> messages(4, []) |> Enum.reject(&(&1.type == "crier-gap"))
      end

    assert Enum.sort(data(after_lone)) == ~w(h:1 h:2 h:3 h:4)
    assert Enum.filter(data(after_lone), &(&1 in ~w(h:1 h:2))) == ~w(h:1 h:2)
    assert Enum.filter(data(after_lone), &(&1 in ~w(h:3 h:4))) == ~w(h:3 h:4)
    assert after_lone == after_pair
    {epoch_after, _} = PeerCluster.position(hd(after_lone).id)
    assert epoch_after > elem(PeerCluster.position(List.last(lone_events).id), 0)
    assert epoch_after > elem(PeerCluster.position(List.last(pair_events).id), 0)
  end

  # Events until `count` of them are messages (gap events are kept too).
  defp messages(_client, 0, seen), do: seen

  defp messages(client, count, seen) do
    assert {:ok, event, client} = SseClient.next_event(client)
    left = if event.type == "message", do: count - 1, else: count
    messages(client, left, seen ++ [event])
  end

  defp data(events), do: Enum.map(events, & &1.data)

  defp publish(node, tag, range) do
    :ok = :erpc.call(node, PeerCluster, :publish_many, [@server, "feed", tag, range])
  end

  defp start_server!(node), do: PeerCluster.start_server!(node, @server, self(), replay: 100)

  defp connect(port, last_event_id \\ nil) do
    opts = if last_event_id, do: [last_event_id: last_event_id], else: []
    TopicHandler.connect_detached(port, "/topics/feed", opts)
  end
end
