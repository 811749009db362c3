# Plain BEAM baseline for the Crier benchmark: an SSE server on :gen_tcp with one
# process per stream, the model Bandit and Cowboy use. Run: elixir bench/baseline_server.exs [port]
#
# It speaks the benchmark's endpoint contract (bench/README.md). Each stream process owns
# its socket in {active, once} so it sees the client leave while idle (the best a plain
# process-per-stream server can do; Bandit's HTTP/1 handler does not even do this).
# A publish sends one Erlang message per subscriber per event; each subscriber process
# writes its message with gen_tcp.send/2 (a burst is one message holding all its events).

defmodule Baseline do
  @sse_head "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"

  def main(args) do
    port =
      case args do
        [p | _] -> String.to_integer(p)
        _ -> 0
      end

    :ets.new(:subs, [:set, :public, :named_table, write_concurrency: true])
    :ets.new(:closes, [:duplicate_bag, :public, :named_table, write_concurrency: true])
    :persistent_term.put(:counters, :counters.new(5, [:write_concurrency]))

    {:ok, lsock} =
      :gen_tcp.listen(port, [
        :binary,
        ip: {127, 0, 0, 1},
        active: false,
        reuseaddr: true,
        backlog: 4096,
        nodelay: true,
        packet: :http_bin
      ])

    {:ok, actual} = :inet.port(lsock)
    IO.puts("listening on 127.0.0.1:#{actual}")
    for _ <- 1..2, do: spawn_link(fn -> accept(lsock) end)
    max_secs = String.to_integer(System.get_env("BENCH_MAX_SECS", "3600"))
    Process.sleep(max_secs * 1000)
  end

  # counters: 1 open, 2 subscribers, 3 told, 4 published, 5 accepted
  defp cnt, do: :persistent_term.get(:counters)

  defp accept(lsock) do
    case :gen_tcp.accept(lsock) do
      {:ok, sock} ->
        :counters.add(cnt(), 5, 1)
        pid = spawn(fn -> receive(do: (:go -> request(sock))) end)
        :ok = :gen_tcp.controlling_process(sock, pid)
        send(pid, :go)
        accept(lsock)

      {:error, _} ->
        Process.sleep(5)
        accept(lsock)
    end
  end

  defp request(sock) do
    with {:ok, {:http_request, method, {:abs_path, target}, _}} <- :gen_tcp.recv(sock, 0, 10_000),
         :ok <- headers(sock) do
      :ok = :inet.setopts(sock, packet: :raw)
      [path | rest] = String.split(target, "?", parts: 2)
      query = URI.decode_query(Enum.at(rest, 0, ""))
      route(method, path, query, sock)
    else
      _ -> :gen_tcp.close(sock)
    end
  end

  defp headers(sock) do
    case :gen_tcp.recv(sock, 0, 10_000) do
      {:ok, :http_eoh} -> :ok
      {:ok, {:http_header, _, _, _, _}} -> headers(sock)
      other -> other
    end
  end

  defp route(:GET, "/sse", q, sock), do: stream(sock, q["id"] || "", false)
  defp route(:GET, "/sub", q, sock), do: stream(sock, q["id"] || "", true)

  defp route(:POST, "/publish", q, sock) do
    n = String.to_integer(q["n"] || "1")
    interval_us = String.to_integer(q["interval_us"] || "5000")
    publish(n, q["mode"] || "b2b", interval_us)
    respond(sock, 200, "application/json", ~s({"published":#{n}}\n))
  end

  defp route(:GET, "/stats", _q, sock) do
    c = cnt()

    body =
      ~s({"open":#{:counters.get(c, 1)},"subscribers":#{:counters.get(c, 2)},) <>
        ~s("closed_told":#{:counters.get(c, 3)},"overflow":0,"accepted":#{:counters.get(c, 5)},) <>
        ~s("processes":#{:erlang.system_info(:process_count)}}\n)

    respond(sock, 200, "application/json", body)
  end

  defp route(:GET, "/closes", _q, sock) do
    body =
      :ets.foldl(fn {id, t}, acc -> [id, " ", Integer.to_string(t), "\n" | acc] end, [], :closes)

    respond(sock, 200, "text/plain", body)
  end

  defp route(:POST, "/reset", _q, sock) do
    :ets.delete_all_objects(:closes)
    :counters.put(cnt(), 3, 0)
    respond(sock, 200, "application/json", "{}\n")
  end

  defp route(_, _, _, sock), do: respond(sock, 404, "text/plain", "not found\n")

  defp respond(sock, status, ctype, body) do
    len = IO.iodata_length(body)

    :gen_tcp.send(sock, [
      "HTTP/1.1 #{status} X\r\ncontent-type: #{ctype}\r\ncontent-length: #{len}\r\nconnection: close\r\n\r\n",
      body
    ])

    :gen_tcp.close(sock)
  end

  defp frame(payload) do
    [Integer.to_string(IO.iodata_length(payload), 16), "\r\n", payload, "\r\n"]
    |> IO.iodata_to_binary()
  end

  defp event(seq),
    do: [
      "data: ",
      Integer.to_string(seq),
      " ",
      Integer.to_string(System.os_time(:nanosecond)),
      "\n\n"
    ]

  defp publish(n, mode, interval_us) do
    base = :counters.get(cnt(), 4)
    :counters.add(cnt(), 4, n)

    case mode do
      "burst" ->
        fanout(frame(for k <- 0..(n - 1), do: event(base + k)))

      "paced" ->
        t0 = System.monotonic_time(:microsecond)

        for k <- 0..(n - 1) do
          wait_until(t0 + k * interval_us)
          fanout(frame(event(base + k)))
        end

      _ ->
        for k <- 0..(n - 1), do: fanout(frame(event(base + k)))
    end
  end

  defp wait_until(t) do
    left = t - System.monotonic_time(:microsecond)
    if left > 1000, do: Process.sleep(div(left, 1000))
  end

  defp fanout(bin) do
    :ets.foldl(fn {pid}, :ok -> send(pid, {:ev, bin}) && :ok end, :ok, :subs)
  end

  defp stream(sock, id, subscribe?) do
    case :gen_tcp.send(sock, @sse_head) do
      :ok ->
        :counters.add(cnt(), 1, 1)

        if subscribe? do
          :ets.insert(:subs, {self()})
          :counters.add(cnt(), 2, 1)
        end

        :ok = :inet.setopts(sock, active: :once)
        loop(sock, id, subscribe?)

      _ ->
        :gen_tcp.close(sock)
    end
  end

  defp loop(sock, id, sub?) do
    receive do
      {:ev, bin} ->
        case :gen_tcp.send(sock, bin) do
          :ok -> loop(sock, id, sub?)
          _ -> gone(sock, id, sub?, false)
        end

      {:tcp, ^sock, _} ->
        :inet.setopts(sock, active: :once)
        loop(sock, id, sub?)

      {:tcp_closed, ^sock} ->
        gone(sock, id, sub?, true)

      {:tcp_error, ^sock, _} ->
        gone(sock, id, sub?, true)
    end
  end

  defp gone(sock, id, sub?, told?) do
    t = System.os_time(:nanosecond)

    if told? and not sub? do
      if id != "", do: :ets.insert(:closes, {id, t})
      :counters.add(cnt(), 3, 1)
    end

    if sub? do
      :ets.delete(:subs, self())
      :counters.sub(cnt(), 2, 1)
    end

    :counters.sub(cnt(), 1, 1)
    :gen_tcp.close(sock)
  end
end

Baseline.main(System.argv())
