defmodule Crier.Test.Relay do
  @moduledoc """
  The test process as the only dispatcher of a server started with `Native.server_start/3`:
  it opens a relay, reads the relay's bell, and takes the reports, as `Crier.Dispatcher` does.
  What owners are told is sent by `relay_take/1` itself, so an owning test process receives
  `{:crier, ref, _}` messages once it takes.
  """

  alias Crier.Native

  @doc "A relay for the calling process, with its bell open: `{relay, bell}`."
  @spec open() :: {reference(), port()}
  def open do
    {:ok, relay} = Native.relay_open()
    {:ok, fd} = Native.relay_bell(relay)
    {:ok, bell} = :gen_udp.open(0, [:local, :binary, fd: fd, active: true])
    {relay, bell}
  end

  @doc """
  Requests as `{conn, request}`, oldest first, taken until there are at least `count`,
  waiting at most `timeout` ms for each bell. Other reports taken meanwhile are dropped
  (what owners are told, the take has sent them).
  """
  @spec requests({reference(), port()}, pos_integer(), timeout()) :: [{reference(), tuple()}]
  def requests({relay, bell}, count, timeout \\ 5_000),
    do: collect(relay, bell, count, timeout, [])

  defp collect(relay, bell, count, timeout, acc) do
    {status, reports} =
      case Native.relay_take(relay) do
        {:heavy, []} -> Native.dirty(:relay_take, [relay])
        taken -> taken
      end

    requests = for {:crier_request, conn, request} <- reports, do: {conn, request}
    acc = Enum.reverse(requests, acc)
    left = max(count - length(requests), 0)

    cond do
      left == 0 -> Enum.reverse(acc)
      status in [:more, :heavy] -> collect(relay, bell, left, timeout, acc)
      true -> await_bell(relay, bell, left, timeout, acc)
    end
  end

  defp await_bell(relay, bell, count, timeout, acc) do
    receive do
      {:udp, ^bell, _, _, _} -> collect(relay, bell, count, timeout, acc)
    after
      timeout -> raise "no request came within #{timeout} ms"
    end
  end
end
