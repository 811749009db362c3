# What cluster fan-out costs per event against local fan-out, measured in one run.
#
#   mix run bench/cluster_fanout.exs [--subscribers 20] [--events 5000] [--paced 300]
#
# Starts three :peer nodes on 127.0.0.1 (with this node's code paths), a Crier server on
# each, and SSE clients (this node, plain :gen_tcp) subscribed to topic "bench" on every
# node. Each event's data is its publish time (µs, system clock; one machine, one clock). The
# publisher runs on a node that is NOT the sequencer, the worst case: its event goes to the
# sequencer and back before its own node's clients get it.
#
#   local      Crier.broadcast/3 on the publisher's node; its clients only.
#   unordered  a local broadcast plus one message per other node to a process there that
#              broadcasts it locally: the :pg fan-out Crier had before cluster ids (no
#              sequencer, no common order, no common id); clients of all three nodes.
#   cluster    Crier.broadcast/4 with cluster: true; clients of all three nodes.
#
# For each: back to back (b2b, events/s until every client has every event) and paced (one
# event per ms: latency p50/p99 from publish to receipt, by where the client is), and the
# CPU time all three nodes spent (utime + stime from /proc), per event published and per
# event delivered. Prints a Markdown table; bench/RESULTS.md keeps the last one.

defmodule ClusterBench.Reader do
  @moduledoc false
  # One SSE client: counts events and keeps each one's latency until it has `expected`.
  def start(port, expected, report_to) do
    spawn_link(fn ->
      {:ok, socket} =
        :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: true, packet: :raw])

      :ok = :gen_tcp.send(socket, "GET /sub HTTP/1.1\r\nhost: x\r\n\r\n")
      send(report_to, {:connected, self()})
      loop(socket, "", expected, [], report_to)
    end)
  end

  defp loop(socket, _buffer, 0, latencies, report_to) do
    :gen_tcp.close(socket)
    send(report_to, {:done, self(), latencies})
  end

  defp loop(socket, buffer, left, latencies, report_to) do
    receive do
      {:tcp, ^socket, bytes} ->
        now = System.os_time(:microsecond)
        buffer = buffer <> bytes
        # Complete events only; a partial one waits for the rest of its bytes.
        {complete, rest} = split_complete(buffer)
        times = Regex.scan(~r/data: (\d+)\n/, complete, capture: :all_but_first)
        new = for [t] <- times, do: now - String.to_integer(t)
        loop(socket, rest, left - length(new), new ++ latencies, report_to)

      {:tcp_closed, ^socket} ->
        send(report_to, {:done, self(), latencies})
    end
  end

  defp split_complete(buffer) do
    case :binary.matches(buffer, "\n\n") do
      [] ->
        {"", buffer}

      matches ->
        {at, 2} = List.last(matches)
        <<complete::binary-size(at + 2), rest::binary>> = buffer
        {complete, rest}
    end
  end
end

defmodule ClusterBench do
  @moduledoc false
  @name :bench_cluster

  # The code the peers run: compiled here, loaded there (a script's modules have no .beam).
  @remote_code """
    defmodule ClusterBench.Handler do
      @moduledoc false
      @behaviour Crier.Handler
      @impl true
      def call(conn, _opts) do
        {:ok, conn} = Crier.sse(conn)
        :ok = Crier.subscribe(conn, "bench")
      end
    end

    defmodule ClusterBench.Remote do
      @moduledoc false
      # Runs on a peer: publishes `n` events, each carrying its publish time. `:unordered`
      # is the fan-out Crier had before cluster ids (and any :pg fan-out has): a local
      # broadcast plus one message to a relay on each other node, no sequencer.
      def publish(n, how, pace_ms) do
        relays = if how == :unordered, do: :pg.get_members(Crier.Cluster.scope(), :relays)

        for _ <- 1..n do
          event = %Crier.Event{data: Integer.to_string(System.os_time(:microsecond))}

          case how do
            :local ->
              :ok = Crier.broadcast(:bench_cluster, "bench", event)

            :cluster ->
              :ok = Crier.broadcast(:bench_cluster, "bench", event, cluster: true)

            :unordered ->
              :ok = Crier.broadcast(:bench_cluster, "bench", event)
              for pid <- relays, node(pid) != node(), do: send(pid, {:relay, event})
          end

          if pace_ms > 0, do: Process.sleep(pace_ms)
        end

        :ok
      end

      def start_relay do
        pid =
          spawn(fn ->
            :pg.join(Crier.Cluster.scope(), :relays, self())
            relay()
          end)

        {:ok, pid}
      end

      defp relay do
        receive do
          {:relay, event} -> Crier.broadcast(:bench_cluster, "bench", event)
        end

        relay()
      end
    end
  """

  def main(args) do
    {opts, _, _} =
      OptionParser.parse(args, strict: [subscribers: :integer, events: :integer, paced: :integer])

    subscribers = Keyword.get(opts, :subscribers, 20)
    events = Keyword.get(opts, :events, 5000)
    paced = Keyword.get(opts, :paced, 300)

    distribute!()
    nodes = for i <- 1..3, do: start_peer!(i)
    mesh!(nodes)
    load_bench_modules!(nodes)
    ports = Map.new(nodes, &{&1, start_server!(&1)})
    sequencer = await_sequencer!(nodes)
    publisher = Enum.find(nodes, &(&1 != sequencer))

    for node <- nodes, do: {:ok, _} = :erpc.call(node, ClusterBench.Remote, :start_relay, [])
    readers = %{local: [publisher], unordered: nodes, cluster: nodes}

    rows =
      for scenario <- [:local, :unordered, :cluster],
          {mode, n, pace} <- [{:b2b, events, 0}, {:paced, paced, 1}] do
        on = readers[scenario]
        clients = for node <- on, _ <- 1..subscribers, do: {node, connect(ports[node], n)}
        wait_subscribed(nodes, ports, on, subscribers)
        cpu_before = cpu_us(nodes)
        started = System.monotonic_time(:microsecond)
        :ok = :erpc.call(publisher, ClusterBench.Remote, :publish, [n, scenario, pace])
        results = collect(clients)
        elapsed = System.monotonic_time(:microsecond) - started
        cpu = cpu_us(nodes) - cpu_before
        delivered = Enum.sum(for {_, lat} <- results, do: length(lat))
        same = for {node, lat} <- results, node == publisher, l <- lat, do: l
        other = for {node, lat} <- results, node != publisher, l <- lat, do: l

        %{
          scenario: scenario,
          mode: mode,
          events: n,
          clients: length(clients),
          delivered: delivered,
          events_per_s: n * 1_000_000 / elapsed,
          cpu_per_event: cpu / n,
          cpu_per_delivery: cpu / max(delivered, 1),
          same_node: percentiles(same),
          other_nodes: percentiles(other)
        }
      end

    print(rows, subscribers, publisher, sequencer)
  end

  defp distribute! do
    {_, 0} = System.cmd("epmd", ["-daemon"])
    Process.sleep(200)
    {:ok, _} = :net_kernel.start([:"cluster_bench_#{System.os_time()}@127.0.0.1", :longnames])
  end

  defp start_peer!(i) do
    paths = Enum.flat_map(:code.get_path(), &[~c"-pa", &1])

    {:ok, _peer, node} =
      :peer.start_link(%{
        name: :"cluster_bench_#{i}_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        args: [~c"-setcookie", Atom.to_charlist(Node.get_cookie()) | paths]
      })

    {:ok, _} = :erpc.call(node, :application, :ensure_all_started, [:crier])
    node
  end

  defp mesh!(nodes) do
    for a <- nodes, b <- nodes, a < b, do: true = :erpc.call(a, :net_kernel, :connect_node, [b])
    for node <- nodes, do: :ok = :erpc.call(node, :global, :sync, [])
  end

  defp load_bench_modules!(nodes) do
    for {module, binary} <- Code.compile_string(@remote_code), node <- nodes do
      {:module, ^module} = :erpc.call(node, :code, :load_binary, [module, ~c"nofile", binary])
    end
  end

  defp start_server!(node) do
    spec =
      {Crier,
       name: @name,
       port: 0,
       heartbeat: nil,
       write_queue_bytes: 16 * 1024 * 1024,
       handler: {ClusterBench.Handler, []}}

    {:ok, _} = :erpc.call(node, Supervisor, :start_child, [Crier.Supervisor, spec])
    :erpc.call(node, Crier, :port, [@name])
  end

  defp await_sequencer!(nodes, tries \\ 500) do
    roles = for node <- nodes, do: :erpc.call(node, :sys, :get_state, [@name]).cluster.role

    case for({{:sequencing, _, _}, node} <- Enum.zip(roles, nodes), do: node) do
      [sequencer] when length(roles) == 3 ->
        if :electing not in roles,
          do: sequencer,
          else: retry_sequencer(nodes, tries)

      _ ->
        retry_sequencer(nodes, tries)
    end
  end

  defp retry_sequencer(_nodes, 0), do: raise("no single sequencer")

  defp retry_sequencer(nodes, tries) do
    Process.sleep(10)
    await_sequencer!(nodes, tries - 1)
  end

  defp connect(port, expected) do
    pid = ClusterBench.Reader.start(port, expected, self())

    receive do
      {:connected, ^pid} -> pid
    after
      5_000 -> raise "client did not connect"
    end
  end

  defp wait_subscribed(nodes, _ports, on, per_node, tries \\ 500) do
    counts =
      for node <- nodes, do: {node, :erpc.call(node, Crier, :subscribers, [@name, "bench"])}

    want = for node <- nodes, do: {node, if(node in on, do: per_node, else: 0)}

    cond do
      counts == want -> :ok
      tries == 0 -> raise "subscribers: #{inspect(counts)}, wanted #{inspect(want)}"
      true -> Process.sleep(10) && wait_subscribed(nodes, nil, on, per_node, tries - 1)
    end
  end

  defp collect(clients) do
    for {node, pid} <- clients do
      receive do
        {:done, ^pid, latencies} -> {node, latencies}
      after
        60_000 -> raise "a client did not get all events"
      end
    end
  end

  # CPU time (user + system) of the three peers' OS processes, in µs.
  defp cpu_us(nodes) do
    ticks_per_s = 100

    Enum.sum(
      for node <- nodes do
        pid = :erpc.call(node, :os, :getpid, [])
        fields = File.read!("/proc/#{pid}/stat") |> String.split(") ") |> List.last()
        [utime, stime] = fields |> String.split(" ") |> Enum.slice(11, 2)
        (String.to_integer(utime) + String.to_integer(stime)) * div(1_000_000, ticks_per_s)
      end
    )
  end

  defp percentiles([]), do: nil

  defp percentiles(latencies) do
    sorted = Enum.sort(latencies)
    at = fn q -> Enum.at(sorted, min(length(sorted) - 1, trunc(q * length(sorted)))) end
    %{p50: at.(0.5), p99: at.(0.99)}
  end

  defp print(rows, subscribers, publisher, sequencer) do
    IO.puts("""
    Cluster fan-out, three nodes on one machine (#{System.schedulers_online()} cores), \
    #{subscribers} SSE clients per subscribed node; publisher #{publisher} \
    (not the sequencer, #{sequencer}).

    | scenario | mode | events | clients | events/s | CPU µs per event (3 nodes) | CPU µs per delivery | latency same node p50/p99 µs | other nodes p50/p99 µs |
    |---|---|---|---|---|---|---|---|---|\
    """)

    for row <- rows do
      IO.puts(
        "| #{row.scenario} | #{row.mode} | #{row.events} | #{row.clients} | " <>
          "#{round(row.events_per_s)} | #{cpu(row, :cpu_per_event, 0)} | " <>
          "#{cpu(row, :cpu_per_delivery, 2)} | #{fmt(row.same_node)} | #{fmt(row.other_nodes)} |"
      )
    end

    row = fn scenario, mode -> Enum.find(rows, &(&1.scenario == scenario and &1.mode == mode)) end
    IO.puts("")

    for base <- [:local, :unordered] do
      {paced_base, paced_cluster} = {row.(base, :paced), row.(:cluster, :paced)}
      {b2b_base, b2b_cluster} = {row.(base, :b2b), row.(:cluster, :b2b)}

      IO.puts(
        "Ratios cluster/#{base}: paced same-node latency p50 " <>
          "#{ratio(paced_cluster.same_node.p50, paced_base.same_node.p50)}, b2b events/s " <>
          "#{ratio(b2b_cluster.events_per_s, b2b_base.events_per_s)}, b2b CPU per delivery " <>
          "#{ratio(b2b_cluster.cpu_per_delivery, b2b_base.cpu_per_delivery)}."
      )
    end

    IO.puts(
      "CPU is read in 10 ms ticks; paced runs are mostly idle, so CPU is shown for b2b only."
    )
  end

  defp ratio(a, b), do: Float.round(a / max(b, 0.001), 2)

  # Paced runs spend most of their time idle: their CPU per event says little.
  defp cpu(%{mode: :paced}, _key, _digits), do: "-"
  defp cpu(row, key, 0), do: round(Map.fetch!(row, key))
  defp cpu(row, key, digits), do: Float.round(Map.fetch!(row, key) / 1, digits)

  defp fmt(nil), do: "-"
  defp fmt(%{p50: p50, p99: p99}), do: "#{p50} / #{p99}"
end

ClusterBench.main(System.argv())
