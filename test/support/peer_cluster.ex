defmodule Crier.Test.PeerCluster do
  @moduledoc """
  Real BEAM nodes for cluster tests: starts `:peer` nodes that run the `:crier` application
  with this node's code paths, meshes them, starts a Crier server of one name on each
  (answered by `Crier.Test.TopicHandler`, reporting to the test) and waits until the servers
  have met in `:pg` and agree on one sequencer.
  """

  alias Crier.Test.Wait

  @doc """
  Makes the test node distributed (starting epmd if needed); peers need that. It is hidden:
  the peers' `:global` and `:pg` see only each other, so a test can split them cleanly.
  """
  @spec ensure_distributed!() :: :ok
  def ensure_distributed! do
    unless Node.alive?() do
      {_, 0} = System.cmd("epmd", ["-daemon"])
      # -daemon returns before epmd listens.
      Wait.until(
        fn -> match?({_, 0}, System.cmd("epmd", ["-names"], stderr_to_stdout: true)) end,
        5_000,
        "epmd did not start"
      )

      name = :"crier_test_#{System.unique_integer([:positive])}@127.0.0.1"

      case :net_kernel.start(name, %{name_domain: :longnames, hidden: true}) do
        {:ok, _} -> :ok
        {:error, {:already_started, _}} -> :ok
      end
    end

    :ok
  end

  @doc """
  Starts a peer named after `prefix`, linked to the caller, connected to every node in
  `others`, with `:global` synced, and `args` added to its command line. Returns
  `{peer_pid, node}`.
  """
  @spec start_peer!(atom(), [node()], [charlist()]) :: {pid(), node()}
  def start_peer!(prefix, others \\ [], args \\ []) do
    paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    cookie = Atom.to_charlist(Node.get_cookie())

    {:ok, peer, node} =
      :peer.start_link(%{
        name: :"#{prefix}_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        args: [~c"-setcookie", cookie | paths] ++ args
      })

    {:ok, _} = :erpc.call(node, :application, :ensure_all_started, [:crier])
    # Fully meshed, as a cluster is, and with :global's view merged, so a server started now
    # finds the sequencer that is already there.
    for other <- others, do: true = :erpc.call(node, :net_kernel, :connect_node, [other])
    :ok = :erpc.call(node, :global, :sync, [])
    {peer, node}
  end

  @doc """
  Starts the Crier server `name` on `node` under the `:crier` application's supervisor, with
  `opts` added; returns its port.
  """
  @spec start_server!(node(), atom(), pid(), keyword()) :: :inet.port_number()
  def start_server!(node, name, test, opts \\ []) do
    spec =
      {Crier,
       [name: name, port: 0, heartbeat: nil, handler: {Crier.Test.TopicHandler, test: test}] ++
         opts}

    {:ok, _pid} = :erpc.call(node, Supervisor, :start_child, [Crier.Supervisor, spec])
    :erpc.call(node, Crier, :port, [name])
  end

  @doc "Stops the server `name` on `node` and removes its child spec."
  @spec stop_server(node(), atom()) :: :ok
  def stop_server(node, name) do
    _ = :erpc.call(node, Supervisor, :terminate_child, [Crier.Supervisor, {Crier, name}])
    _ = :erpc.call(node, Supervisor, :delete_child, [Crier.Supervisor, {Crier, name}])
    :ok
  end

  @doc """
  Waits until the servers `name` on `nodes` are all in each other's `:pg` view and all
  follow one sequencer (one of them sequences, the others follow its pid). Returns the node
  of the sequencer.
  """
  @spec await_cluster!(atom(), [node()]) :: node()
  def await_cluster!(name, nodes) do
    Wait.until(
      fn ->
        members =
          for node <- nodes do
            :erpc.call(node, :pg, :get_members, [Crier.Cluster.scope(), {Crier, name}])
            |> Enum.map(&node/1)
            |> Enum.sort()
          end

        roles = for node <- nodes, do: role(node, name)

        sequencers = for {{:sequencing, _, _}, node} <- Enum.zip(roles, nodes), do: node
        followed = for {:following, pid, _} <- roles, uniq: true, do: node(pid)

        with true <- Enum.all?(members, &(&1 == Enum.sort(nodes))),
             false <- :electing in roles,
             [sequencer] <- sequencers,
             true <- followed in [[], [sequencer]] do
          sequencer
        else
          _ -> false
        end
      end,
      10_000,
      "the servers did not meet in :pg under one sequencer"
    )
  end

  # A server that is restarting has no registered listener for a moment: not ready yet.
  defp role(node, name) do
    :erpc.call(node, :sys, :get_state, [name]).cluster.role
  catch
    :exit, {:exception, {:noproc, _}} -> :electing
  end

  @doc """
  Broadcasts `"<tag>:<i>"` for each `i` of `range` to `topic` on server `name`, cluster-wide,
  from the node it runs on (call it there with `:erpc`), pausing a millisecond after every
  `pause_every` events (0: never), so publishers on several nodes interleave.
  """
  @spec publish_many(atom(), String.t(), String.t(), Range.t(), non_neg_integer()) :: :ok
  def publish_many(name, topic, tag, range, pause_every \\ 0) do
    for i <- range do
      :ok = Crier.broadcast(name, topic, %Crier.Event{data: "#{tag}:#{i}"}, cluster: true)
      if pause_every > 0 and rem(i, pause_every) == 0, do: Process.sleep(1)
    end

    :ok
  end

  @doc "The `{epoch, seq}` of a cluster id (`<epoch base 36>-<seq>`)."
  @spec position(String.t()) :: {non_neg_integer(), non_neg_integer()}
  def position(id) do
    [epoch, seq] = String.split(id, "-")
    {String.to_integer(epoch, 36), String.to_integer(seq)}
  end
end
