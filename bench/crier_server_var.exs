# Crier target for the benchmark. Run from the repository root:
#   MIX_ENV=prod mix run --no-compile bench/crier_server.exs
# It prints "listening on 127.0.0.1:<port> pid <os pid>" and serves the endpoint contract
# of bench/README.md until BENCH_MAX_SECS (default 3600) have passed.
#
# With BENCH_TLS_CERTFILE and BENCH_TLS_KEYFILE (PEM) it also starts a second Crier server,
# :bench_tls, in the same VM with the same handler, serving HTTPS: HTTP/1.1 and HTTP/2 by
# ALPN. It prints "tls listening on 127.0.0.1:<port>" first. Publishes go to both servers'
# topics and /stats adds both up, so a client sees the same endpoints on either port.
#
#   GET  /sse?id=X      SSE stream owned by the handler process, which waits in `receive`
#                       for Crier's close message and records when it came (handler mode)
#   GET  /sub?id=X      SSE stream handed to topic "bench" (or ?topic=T); the handler returns
#   POST /publish?n=&mode=paced|b2b|burst&interval_us=
#                       broadcasts n events, data "<seq> <publish ns>". Crier.broadcast/3
#                       takes one event, so burst is n broadcasts in a row, like b2b
#   GET  /stats, GET /closes, POST /reset
#   GET  /hold?id=X     SSE stream whose process runs per-call timings on request
#   POST /percall?op=chunk|broadcast&calls=k
#                       every /hold process makes k calls of Crier.Conn.chunk/2 on its own
#                       stream, or of Crier.broadcast/3 to topic "percall", all at once;
#                       answers the per-call times and how many long_schedule reports
#                       (> 5 ms without yielding) the VM made meanwhile.

defmodule CrierBench do
  @name :bench
  @tls_name :bench_tls

  def main do
    :ets.new(:closes, [:duplicate_bag, :public, :named_table, write_concurrency: true])
    :ets.new(:holders, [:set, :public, :named_table, write_concurrency: true])
    :persistent_term.put({__MODULE__, :counters}, :counters.new(4, [:write_concurrency]))
    {:ok, _} = Crier.start_link(name: @name, port: 0, handler: {CrierBench.Handler, []})
    :persistent_term.put({__MODULE__, :servers}, [@name | start_tls()])
    IO.puts("listening on 127.0.0.1:#{Crier.port(@name)} pid #{System.pid()}")
    max_secs = String.to_integer(System.get_env("BENCH_MAX_SECS", "3600"))
    Process.sleep(max_secs * 1000)
  end

  # The HTTPS server beside the plain one, when the environment names a certificate.
  defp start_tls do
    case {System.get_env("BENCH_TLS_CERTFILE"), System.get_env("BENCH_TLS_KEYFILE")} do
      {cert, key} when is_binary(cert) and is_binary(key) ->
        {:ok, _} =
          Crier.start_link(
            name: @tls_name,
            port: 0,
            certfile: cert,
            keyfile: key,
            # Room for every stream of a run on one HTTP/2 connection (the default, 256, is
            # a browser's tabs); only a limit, nothing is set aside per stream.
            h2_max_concurrent_streams: 20_000,
            handler: {CrierBench.Handler, []}
          )

        IO.puts("tls listening on 127.0.0.1:#{Crier.port(@tls_name)}")
        [@tls_name]

      _ ->
        []
    end
  end

  def servers, do: :persistent_term.get({__MODULE__, :servers})

  # counters: 1 owned streams open, 2 unused, 3 owners told, 4 published
  def cnt, do: :persistent_term.get({__MODULE__, :counters})

  def query(conn), do: URI.decode_query(conn.query || "")

  def json(conn, body),
    do: Crier.Conn.send_resp(conn, 200, [{"content-type", "application/json"}], body)

  # ------------------------------------------------------------------ streams

  def owned(conn, id) do
    case Crier.sse(conn) do
      {:ok, conn} ->
        :counters.add(cnt(), 1, 1)
        ref = conn.ref

        receive do
          {:crier, ^ref, {:error, _reason}} ->
            t = System.os_time(:nanosecond)
            if id != "", do: :ets.insert(:closes, {id, t})
            :counters.add(cnt(), 3, 1)
            :counters.sub(cnt(), 1, 1)
        end

      {:error, _} ->
        :ok
    end
  end

  def subscribed(conn, topic) do
    with {:ok, conn} <- Crier.sse(conn) do
      Crier.subscribe(conn, [topic])
    end
  end

  # ------------------------------------------------------------------ publish

  def publish(n, mode, interval_us) do
    base = :counters.get(cnt(), 4)
    :counters.add(cnt(), 4, n)

    case mode do
      "paced" ->
        t0 = System.monotonic_time(:microsecond)

        for k <- 0..(n - 1) do
          wait_until(t0 + k * interval_us)
          broadcast(base + k)
        end

      _ ->
        for k <- 0..(n - 1), do: broadcast(base + k)
    end

    :ok
  end

  defp broadcast(seq) do
    data = Integer.to_string(seq) <> " " <> Integer.to_string(System.os_time(:nanosecond))
    event = %Crier.Event{data: data}
    for server <- servers(), do: :ok = Crier.broadcast(server, "bench", event)
  end

  defp wait_until(t) do
    left = t - System.monotonic_time(:microsecond)
    if left > 1000, do: Process.sleep(div(left, 1000))
  end

  # ------------------------------------------------------------------ stats

  def stats_json do
    s = servers() |> Enum.map(&Crier.stats/1) |> Enum.reduce(&add_stats/2)
    closes = Map.get(s, :closes, [])

    overflow =
      case closes do
        m when is_map(m) -> Map.get(m, :overflow, 0)
        l when is_list(l) -> Keyword.get(l, :overflow, 0)
        _ -> 0
      end

    extra = for {k, v} <- s, is_integer(v), do: ~s(,"crier_#{k}":#{v})

    ~s({"open":#{Map.get(s, :streams, 0)},"subscribers":#{Map.get(s, :subscribers, 0)},) <>
      ~s("owned_open":#{:counters.get(cnt(), 1)},"closed_told":#{:counters.get(cnt(), 3)},) <>
      ~s("overflow":#{overflow},"holders":#{:ets.info(:holders, :size)},) <>
      ~s("processes":#{:erlang.system_info(:process_count)}#{extra}}\n)
  end

  # Two servers' stats as one: integers add up, the rest is the first server's.
  defp add_stats(a, b) do
    Map.merge(b, a, fn
      _k, x, y when is_integer(x) and is_integer(y) -> x + y
      _k, _x, y -> y
    end)
  end

  def closes_text do
    :ets.foldl(fn {id, t}, acc -> [id, " ", Integer.to_string(t), "\n" | acc] end, [], :closes)
  end

  def reset do
    :ets.delete_all_objects(:closes)
    :counters.put(cnt(), 3, 0)
  end

  # ------------------------------------------------------------------ per-call cost

  def holder(conn) do
    case Crier.sse(conn) do
      {:ok, conn} ->
        :ets.insert(:holders, {self()})
        holder_loop(conn)

      _ ->
        :ok
    end
  end

  defp holder_loop(conn) do
    ref = conn.ref

    receive do
      {:run, op, k, from} ->
        send(from, {:done, self(), run(op, k, conn, [])})
        holder_loop(conn)

      {:crier, ^ref, {:error, _}} ->
        :ets.delete(:holders, self())
    end
  end

  defp run(_op, 0, _conn, acc), do: acc

  defp run(:chunk, k, conn, acc) do
    t0 = :erlang.monotonic_time(:nanosecond)
    r = Crier.Conn.chunk(conn, ": p\n\n")
    t1 = :erlang.monotonic_time(:nanosecond)

    case r do
      {:ok, conn} -> run(:chunk, k - 1, conn, [t1 - t0 | acc])
      _ -> acc
    end
  end

  defp run(:broadcast, k, conn, acc) do
    ev = %Crier.Event{data: "x"}
    t0 = :erlang.monotonic_time(:nanosecond)
    :ok = Crier.broadcast(@name, "percall", ev)
    t1 = :erlang.monotonic_time(:nanosecond)
    run(:broadcast, k - 1, conn, [t1 - t0 | acc])
  end

  def percall(op, k) do
    pids = :ets.foldl(fn {p}, acc -> [p | acc] end, [], :holders)
    flush_monitor([])
    prev = :erlang.system_monitor(self(), [{:long_schedule, 5}])
    t0 = :erlang.monotonic_time(:nanosecond)
    for p <- pids, do: send(p, {:run, op, k, self()})
    samples = collect(MapSet.new(pids), [])
    wall = :erlang.monotonic_time(:nanosecond) - t0
    restore_monitor(prev)
    longs = flush_monitor([])
    {long, long_nif, long_max, long_top} = summarize_long(longs)
    sorted = samples |> List.flatten() |> Enum.sort()
    n = length(sorted)
    t = List.to_tuple(sorted)
    at = fn q -> if n == 0, do: 0, else: elem(t, min(n - 1, max(0, ceil(q * n) - 1))) end
    us = fn ns -> :erlang.float_to_binary(ns / 1000, decimals: 3) end
    mean = if n == 0, do: 0, else: Enum.sum(sorted) / n

    ~s({"op":"#{op}","callers":#{length(pids)},"calls":#{n},"median_us":#{us.(at.(0.5))},) <>
      ~s("p90_us":#{us.(at.(0.9))},"p99_us":#{us.(at.(0.99))},"max_us":#{us.(at.(1.0))},) <>
      ~s("mean_us":#{us.(mean)},"wall_us_per_call":#{us.(if n == 0, do: 0, else: wall / n)},) <>
      ~s("wall_s":#{:erlang.float_to_binary(wall / 1.0e9, decimals: 3)},"long_schedule":#{long},) <>
      ~s("long_schedule_in_nif":#{long_nif},"long_schedule_max_ms":#{long_max},"long_schedule_top":"#{long_top}",) <>
      ~s("schedulers":#{:erlang.system_info(:schedulers_online)}}\n)
  end

  defp collect(waiting, acc) do
    if MapSet.size(waiting) == 0 do
      acc
    else
      receive do
        {:done, pid, samples} -> collect(MapSet.delete(waiting, pid), [samples | acc])
      after
        300_000 -> acc
      end
    end
  end

  defp restore_monitor(:undefined), do: :erlang.system_monitor(:undefined)
  defp restore_monitor({pid, opts}), do: :erlang.system_monitor(pid, opts)

  defp flush_monitor(acc) do
    receive do
      {:monitor, _, :long_schedule, info} -> flush_monitor([info | acc])
    after
      0 -> acc
    end
  end

  # How many reports, how many with a Crier NIF where the process was scheduled in or out
  # (a NIF that held a scheduler), the longest, and where they were.
  defp summarize_long(infos) do
    loc = fn info ->
      for k <- [:in, :out], mfa = Keyword.get(info, k), do: mfa
    end

    nif? = fn info ->
      Enum.any?(loc.(info), fn
        {Crier.Native, _, _} -> true
        _ -> false
      end)
    end

    max = infos |> Enum.map(&Keyword.get(&1, :timeout, 0)) |> Enum.max(fn -> 0 end)

    top =
      infos
      |> Enum.map(fn info ->
        case Keyword.get(info, :in) do
          {m, f, a} -> "#{inspect(m)}.#{f}/#{a}"
          other -> inspect(other)
        end
      end)
      |> Enum.frequencies()
      |> Enum.sort_by(fn {_, n} -> -n end)
      |> Enum.take(3)
      |> Enum.map_join("; ", fn {where, n} -> "#{where} x#{n}" end)
      |> String.replace(~s("), "'")

    {length(infos), Enum.count(infos, nif?), max, top}
  end
end

defmodule CrierBench.Handler do
  @behaviour Crier.Handler

  @impl true
  def call(%Crier.Conn{method: "GET", path: "/sse"} = conn, _opts),
    do: CrierBench.owned(conn, CrierBench.query(conn)["id"] || "")

  def call(%Crier.Conn{method: "GET", path: "/linger"} = conn, _opts) do
    {:ok, conn} = Crier.sse(conn)
    ref = conn.ref

    receive do
      {:crier, ^ref, {:error, _}} ->
        receive do
          :never -> :ok
        end
    end
  end

  def call(%Crier.Conn{method: "GET", path: "/lingergc"} = conn, _opts) do
    {:ok, conn} = Crier.sse(conn)
    ref = conn.ref

    receive do
      {:crier, ^ref, {:error, _}} ->
        :erlang.garbage_collect()

        receive do
          :never -> conn
        end
    end
  end

  def call(%Crier.Conn{method: "GET", path: "/dropres"} = conn, _opts) do
    {:ok, conn} = Crier.sse(conn)
    ref = conn.ref

    receive do
      {:crier, ^ref, {:error, _}} -> :ok
    end

    # The resource and the close message are dead here; a GC frees both; then linger.
    conn = nil
    :erlang.garbage_collect()

    receive do
      :never -> conn
    end
  end

  def call(%Crier.Conn{method: "GET", path: "/sub"} = conn, _opts),
    do: CrierBench.subscribed(conn, CrierBench.query(conn)["topic"] || "bench")

  def call(%Crier.Conn{method: "GET", path: "/hold"} = conn, _opts), do: CrierBench.holder(conn)

  def call(%Crier.Conn{method: "POST", path: "/publish"} = conn, _opts) do
    q = CrierBench.query(conn)
    n = String.to_integer(q["n"] || "1")
    CrierBench.publish(n, q["mode"] || "b2b", String.to_integer(q["interval_us"] || "5000"))
    CrierBench.json(conn, ~s({"published":#{n}}\n))
  end

  def call(%Crier.Conn{method: "GET", path: "/stats"} = conn, _opts),
    do: CrierBench.json(conn, CrierBench.stats_json())

  def call(%Crier.Conn{method: "GET", path: "/closes"} = conn, _opts),
    do:
      Crier.Conn.send_resp(conn, 200, [{"content-type", "text/plain"}], CrierBench.closes_text())

  def call(%Crier.Conn{method: "POST", path: "/reset"} = conn, _opts) do
    CrierBench.reset()
    CrierBench.json(conn, "{}\n")
  end

  def call(%Crier.Conn{method: "POST", path: "/percall"} = conn, _opts) do
    q = CrierBench.query(conn)
    op = if q["op"] == "broadcast", do: :broadcast, else: :chunk
    CrierBench.json(conn, CrierBench.percall(op, String.to_integer(q["calls"] || "100")))
  end

  def call(conn, _opts), do: Crier.Conn.send_resp(conn, 404, [], "not found\n")
end

CrierBench.main()
