# Opens many SSE streams from a VM of its own (each VM may open at most 20,000 files, so
# the server's side and the clients' side of 10,000 streams cannot share one). Used by
# test/scheduler_test.exs:
#
#     elixir test/support/many_clients.exs PORT COUNT
#
# Each client sends one GET and reads its chunked response to the last chunk. Prints
# `connected` once every client is connected, then `done COMPLETE EVENTS` where COMPLETE
# counts the responses read to their last chunk and EVENTS the `data:` lines received.

[port, count] = Enum.map(System.argv(), &String.to_integer/1)
parent = self()

read = fn read, socket, acc ->
  case :gen_tcp.recv(socket, 0, 60_000) do
    {:ok, data} ->
      acc = acc <> data

      if String.ends_with?(acc, "\r\n0\r\n\r\n"),
        do: {:complete, acc},
        else: read.(read, socket, acc)

    {:error, _} ->
      {:cut, acc}
  end
end

# Connect in waves so the listen backlog never overflows into SYN retries.
for wave <- Enum.chunk_every(1..count, 500) do
  pids =
    for _ <- wave do
      spawn_link(fn ->
        {:ok, socket} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 30_000)

        :ok = :gen_tcp.send(socket, "GET / HTTP/1.1\r\nhost: load\r\n\r\n")
        send(parent, {:connected, self()})
        {status, data} = read.(read, socket, "")
        events = data |> :binary.matches("data: ") |> length()
        send(parent, {:result, status, events})
        :gen_tcp.close(socket)
      end)
    end

  for pid <- pids do
    receive do
      {:connected, ^pid} -> :ok
    end
  end
end

IO.puts("connected")

{complete, events} =
  Enum.reduce(1..count, {0, 0}, fn _, {complete, events} ->
    receive do
      {:result, :complete, n} -> {complete + 1, events + n}
      {:result, :cut, n} -> {complete, events + n}
    end
  end)

IO.puts("done #{complete} #{events}")
