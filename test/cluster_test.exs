defmodule Crier.ClusterTest do
  @moduledoc """
  Cluster fan-out with real nodes: the test starts two peer nodes (`:peer`), each running
  its own Crier listener, and real SSE clients connect to each. An event broadcast on node A
  with `cluster: true` reaches the clients of node B through `:pg`; one without it stays on A.
  """
  use ExUnit.Case, async: false

  alias Crier.Event
  alias Crier.Test.{SseClient, TopicHandler, Wait}

  @moduletag :cluster
  @server :crier_cluster_test

  setup_all do
    ensure_distributed!()
    a = start_peer!(:crier_a)
    b = start_peer!(:crier_b)
    # Fully meshed, as a cluster is: A must see B's server in :pg.
    true = :erpc.call(a, :net_kernel, :connect_node, [b])
    %{a: a, b: b}
  end

  setup %{a: a, b: b} do
    test = self()
    port_a = start_server!(a, test)
    port_b = start_server!(b, test)

    Wait.until(
      fn ->
        members = :erpc.call(a, :pg, :get_members, [Crier.Cluster.scope(), {Crier, @server}])
        Enum.sort(Enum.map(members, &node/1)) == Enum.sort([a, b])
      end,
      10_000,
      "the servers of A and B did not meet in :pg"
    )

    on_exit(fn ->
      for node <- [a, b] do
        :erpc.call(node, Supervisor, :terminate_child, [Crier.Supervisor, {Crier, @server}])
        :erpc.call(node, Supervisor, :delete_child, [Crier.Supervisor, {Crier, @server}])
      end
    end)

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

  defp subscribe(port, node) do
    client = SseClient.connect(port, "/topics/room")
    assert_receive {:detached, handler, _ref}, 5_000
    assert node(handler) == node
    Wait.until(fn -> :erpc.call(node, Crier, :stats, [@server]).subscribers == 1 end)
    client
  end

  defp start_server!(node, test) do
    spec = {Crier, name: @server, port: 0, heartbeat: nil, handler: {TopicHandler, test: test}}
    {:ok, _pid} = :erpc.call(node, Supervisor, :start_child, [Crier.Supervisor, spec])
    :erpc.call(node, Crier, :port, [@server])
  end

  # The test node must be distributed to start peers; epmd must run for that.
  defp ensure_distributed! do
    unless Node.alive?() do
      {_, 0} = System.cmd("epmd", ["-daemon"])
      # -daemon returns before epmd listens.
      Wait.until(
        fn -> match?({_, 0}, System.cmd("epmd", ["-names"], stderr_to_stdout: true)) end,
        5_000,
        "epmd did not start"
      )

      name = :"crier_test_#{System.unique_integer([:positive])}@127.0.0.1"

      case :net_kernel.start([name, :longnames]) do
        {:ok, _} -> :ok
        {:error, {:already_started, _}} -> :ok
      end
    end

    :ok
  end

  # A peer with this node's code paths (so it loads Crier, its NIF from priv/, and the test
  # support modules) and cookie, running the :crier application.
  defp start_peer!(prefix) do
    paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
    cookie = Atom.to_charlist(Node.get_cookie())

    {:ok, _peer, node} =
      :peer.start_link(%{
        name: :"#{prefix}_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        args: [~c"-setcookie", cookie | paths]
      })

    {:ok, _} = :erpc.call(node, :application, :ensure_all_started, [:crier])
    node
  end
end
