defmodule Crier.Cluster do
  @moduledoc """
  Cluster broadcasts in one order for the whole cluster, over OTP's `:pg` and `:global`.

  Every `Crier` server joins the `:pg` group named after it, in the `Crier.Cluster` scope.
  One of the servers of a name is the cluster's *sequencer*: it holds the `:global` name
  `{Crier.Cluster, name}`. `Crier.broadcast(name, topic, event, cluster: true)` hands the
  event to the local server, which passes it to the sequencer; the sequencer numbers it with
  the next number of its *epoch* and sends it to every server of the group, its own
  included. Erlang distribution keeps the order of one sender's messages to one receiver, so
  every node delivers the cluster's events in the sequencer's order, and the event's id,
  `<epoch>-<seq>` (`Crier.Event` ids of that form are Crier's), is the same on every node.
  That is what makes `Last-Event-ID` replay exact on any node (see `Crier.subscribe/3`).

  An epoch is the microseconds of the system clock when a sequencer starts (and not before
  2020), and always more than the last epoch its node saw, so epochs grow along one line of
  succession. A new epoch starts when the sequencer changes: its server stopped, its node
  died or was cut off (the other side elects its own), or `:global` resolved two sequencers
  after a netsplit healed (the one on the lower node name goes on, in a new epoch). A
  sequencer that stops says where its epoch ended, and its successor announces its epoch as
  following on from there, so nodes that had every event go on with no gap (a rolling deploy
  loses nothing). Broadcasts in flight to a sequencer that goes away are lost, as a message
  to a node that goes down is. Per publisher, broadcasts keep their order (publisher, local
  server and sequencer each pass them on in the order they came), except across a change of
  sequencer. The design and its proof: ARCHITECTURE.md, "Cluster replay".

  Roles of one server, as `t:role/0`: `:electing` (no sequencer known yet; broadcasts wait
  in order), `{:following, pid, monitor}`, `{:sequencing, epoch, last_seq}`.
  """

  alias Crier.Native

  @scope __MODULE__

  # After the sequencer went down, :global may still hold its name for a moment: elect again
  # after this many ms rather than in a loop.
  @reelect_after 10

  # How often a server checks that the sequencer it follows (or is) still holds the :global
  # name: a safety net for a name conflict whose resolution it was not told of.
  @check_every 1_000

  # Epochs and sequence numbers are u64 in the hub.
  @max_u64 0xFFFF_FFFF_FFFF_FFFF

  # 2020-01-01T00:00:00Z in µs: an epoch is never below it (whatever the clock says), so every
  # epoch has the 10 base-36 digits that set cluster ids apart (MIN_EPOCH in cluster_order.rs).
  @min_epoch 1_577_836_800_000_000

  @enforce_keys [:name, :resource]
  defstruct [:name, :resource, role: :electing, waiting: [], last_epoch: 0, ended: nil]

  @typedoc "A sequencer's epoch: microseconds since the UNIX epoch when it started."
  @type epoch :: non_neg_integer()
  @type role ::
          :electing
          | {:following, pid(), reference()}
          | {:sequencing, epoch(), non_neg_integer()}
  @type t :: %__MODULE__{
          name: atom(),
          resource: reference(),
          role: role(),
          waiting: [{String.t(), map()}],
          last_epoch: epoch(),
          ended: {epoch(), non_neg_integer()} | nil
        }

  @doc "The `:pg` scope Crier uses."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc false
  # Joins the server (the calling process) to its group and starts looking for the sequencer.
  @spec init(atom(), reference()) :: t()
  def init(name, resource) do
    :ok = :pg.join(@scope, {Crier, name}, self())
    send(self(), {:crier_cluster, :elect})
    Process.send_after(self(), {:crier_cluster, :check}, @check_every)
    %__MODULE__{name: name, resource: resource}
  end

  @doc """
  Broadcasts `event` to `topic` on the servers named `name` on every connected node, this
  one included, in the cluster's order. Returns at once; the event was checked by the caller.
  """
  @spec publish(atom(), String.t(), Crier.Event.t() | map()) :: :ok
  def publish(name, topic, event) do
    send(name, {:crier_cluster, {:publish, topic, event}})
    :ok
  end

  @doc false
  # One cluster message to the server; returns the new cluster state.
  @spec handle(term(), t()) :: t()
  # The publisher checked the event; only the shape of a stray message is checked here. (A
  # number given to something no node can broadcast leaves a hole, which nodes report as a
  # gap: safe, never a wrong replay.)
  def handle({:publish, topic, event}, cluster) when not is_binary(topic) or not is_map(event),
    do: cluster

  def handle({:publish, topic, event}, %__MODULE__{role: {:sequencing, epoch, seq}} = cluster) do
    seq = seq + 1
    to_group(%{cluster | role: {:sequencing, epoch, seq}}, {:event, epoch, seq, topic, event})
  end

  def handle({:publish, _topic, _event} = publish, %__MODULE__{role: {:following, pid, _}} = c) do
    send(pid, {:crier_cluster, publish})
    c
  end

  def handle({:publish, topic, event}, %__MODULE__{role: :electing} = cluster) do
    %{cluster | waiting: [{topic, event} | cluster.waiting]}
  end

  def handle({:event, epoch, seq, topic, event}, cluster)
      when is_integer(epoch) and epoch in 0..@max_u64 and is_integer(seq) and
             seq in 0..@max_u64 and is_binary(topic) do
    # A large event is decoded on a dirty scheduler, as a local broadcast's is.
    Crier.Boundary.call(Crier.Boundary.large_event?(event), :server_broadcast_sequenced, [
      cluster.resource,
      topic,
      event,
      epoch,
      seq
    ])

    if epoch < cluster.last_epoch, do: tell_behind(cluster, cluster.role)
    %{cluster | last_epoch: max(cluster.last_epoch, epoch)}
  end

  def handle({:epoch_start, epoch, follows, sequencer}, cluster)
      when is_integer(epoch) and epoch in 0..@max_u64 and is_pid(sequencer) do
    # A sequencer whose clock is behind may start an epoch older than one this node has seen:
    # this node would drop its events as stale. It is told, and starts a newer one.
    if epoch < cluster.last_epoch and sequencer != self(),
      do: send(sequencer, {:crier_cluster, {:epoch_behind, cluster.last_epoch}})

    Native.server_start_epoch(cluster.resource, epoch, follows)
    %{cluster | last_epoch: max(cluster.last_epoch, epoch)}
  end

  # A node has seen a newer epoch than this sequencer's (a late message of a former sequencer
  # names an older one, or this one's own: ignored).
  def handle({:epoch_behind, seen}, %__MODULE__{role: {:sequencing, epoch, _}} = cluster)
      when is_integer(seen) and seen > epoch do
    handle(:renew_epoch, %{cluster | last_epoch: max(cluster.last_epoch, seen)})
  end

  # The sequencer of `epoch` stopped after numbering `seq`: a successor elected here says so.
  def handle({:epoch_end, epoch, seq}, cluster) when is_integer(epoch) and is_integer(seq) do
    %{cluster | ended: {epoch, seq}, last_epoch: max(cluster.last_epoch, epoch)}
  end

  def handle(:elect, %__MODULE__{role: :electing} = cluster), do: elect(cluster)

  def handle({:sequencer_down, ref}, %__MODULE__{role: {:following, _, ref}} = cluster) do
    Process.send_after(self(), {:crier_cluster, :elect}, @reelect_after)
    %{cluster | role: :electing}
  end

  # :global kept the other sequencer after a netsplit healed: follow it.
  def handle({:lost, winner}, %__MODULE__{role: {:sequencing, _, _}} = cluster) do
    follow(cluster, winner)
  end

  # Kept the name against another sequencer: start a new epoch, past the other side's; nodes
  # that followed this one go straight on into it.
  def handle(:renew_epoch, %__MODULE__{role: {:sequencing, epoch, seq}} = cluster) do
    sequence(%{cluster | last_epoch: max(cluster.last_epoch, epoch)}, {epoch, seq})
  end

  # The sequencer left the group on purpose (its server is stopping).
  def handle({:sequencer_left, pid}, %__MODULE__{role: {:following, pid, ref}} = cluster) do
    Process.demonitor(ref, [:flush])
    elect(%{cluster | role: :electing})
  end

  def handle(:check, cluster) do
    Process.send_after(self(), {:crier_cluster, :check}, @check_every)
    check(cluster, :global.whereis_name({__MODULE__, cluster.name}))
  end

  # Stale: an election already done, a monitor of a former sequencer.
  def handle(_other, cluster), do: cluster

  @doc false
  # The server is stopping: a sequencer gives up its name, says where its epoch ended (so its
  # successor's epoch can follow on with no gap) and tells the others to elect a new one now,
  # rather than when its process is gone after the drain.
  @spec leave(t()) :: :ok
  def leave(%__MODULE__{role: {:sequencing, epoch, seq}} = cluster) do
    :global.unregister_name({__MODULE__, cluster.name})

    for pid <- :pg.get_members(@scope, {Crier, cluster.name}), pid != self() do
      send(pid, {:crier_cluster, {:epoch_end, epoch, seq}})
      send(pid, {:crier_cluster, {:sequencer_left, self()}})
    end

    :pg.leave(@scope, {Crier, cluster.name}, self())
    :ok
  end

  def leave(cluster) do
    :pg.leave(@scope, {Crier, cluster.name}, self())
    :ok
  end

  @doc false
  # Called by :global on one node when two sequencers of one name meet after a netsplit.
  @spec resolve(term(), pid(), pid()) :: pid()
  def resolve(_name, pid1, pid2) do
    [winner, loser] = Enum.sort_by([pid1, pid2], &node/1)
    send(loser, {:crier_cluster, {:lost, winner}})
    send(winner, {:crier_cluster, :renew_epoch})
    winner
  end

  defp elect(cluster) do
    key = {__MODULE__, cluster.name}

    case :global.whereis_name(key) do
      :undefined ->
        case :global.register_name(key, self(), &__MODULE__.resolve/3) do
          :yes -> sequence(cluster, follows(cluster))
          :no -> retry_election(cluster)
        end

      pid when pid == self() ->
        sequence(cluster, follows(cluster))

      pid ->
        follow(cluster, pid)
    end
  end

  # An event of an epoch older than one this node has seen: dropped as stale by the hub. If
  # it came from the sequencer this node follows (its clock is behind, and this node missed
  # its epoch start), that sequencer is told, and starts a newer epoch.
  defp tell_behind(cluster, {:following, pid, _}),
    do: send(pid, {:crier_cluster, {:epoch_behind, cluster.last_epoch}})

  defp tell_behind(_cluster, _role), do: :ok

  # The role against who holds the name now. A sequencer that lost its name without being told
  # follows the holder (or takes the name back if nobody holds it); a follower of a former
  # sequencer follows the holder, or sequences if the name is its own.
  defp check(%__MODULE__{role: {:sequencing, _, _}} = cluster, holder) do
    cond do
      holder == self() -> cluster
      holder == :undefined -> retake_name(cluster)
      true -> follow(cluster, holder)
    end
  end

  defp check(%__MODULE__{role: {:following, pid, ref}} = cluster, holder)
       when is_pid(holder) and holder != pid do
    Process.demonitor(ref, [:flush])
    cluster = %{cluster | role: :electing}

    if holder == self(),
      do: sequence(cluster, follows(cluster)),
      else: follow(cluster, holder)
  end

  defp check(cluster, _holder), do: cluster

  # If another server takes it first, the next check follows that one.
  defp retake_name(cluster) do
    _ = :global.register_name({__MODULE__, cluster.name}, self(), &__MODULE__.resolve/3)
    cluster
  end

  defp retry_election(cluster) do
    Process.send_after(self(), {:crier_cluster, :elect}, @reelect_after)
    cluster
  end

  # The epoch this node saw last ended cleanly: the new one follows on from its last event.
  defp follows(%__MODULE__{ended: {epoch, seq}, last_epoch: epoch}), do: {epoch, seq}
  defp follows(_cluster), do: nil

  # Starts an epoch: every server hears of it before its first event.
  defp sequence(cluster, follows) do
    epoch = Enum.max([System.os_time(:microsecond), @min_epoch, cluster.last_epoch + 1])

    %{cluster | role: {:sequencing, epoch, 0}, last_epoch: epoch}
    |> to_group({:epoch_start, epoch, follows, self()})
    |> flush_waiting()
  end

  # Sends `message` to every server of the group; this one (the sequencer) handles it at
  # once, in the same order, which spares the busiest process a message to itself.
  defp to_group(cluster, message) do
    members = :pg.get_members(@scope, {Crier, cluster.name})
    for pid <- members, pid != self(), do: send(pid, {:crier_cluster, message})
    if self() in members, do: handle(message, cluster), else: cluster
  end

  defp follow(cluster, pid) do
    ref = :erlang.monitor(:process, pid, tag: {:crier_cluster, :sequencer_down})
    flush_waiting(%{cluster | role: {:following, pid, ref}})
  end

  defp flush_waiting(cluster) do
    cluster.waiting
    |> Enum.reverse()
    |> Enum.reduce(%{cluster | waiting: []}, fn {topic, event}, cluster ->
      handle({:publish, topic, event}, cluster)
    end)
  end
end
