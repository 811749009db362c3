defmodule Crier.Dispatcher do
  @moduledoc false
  # Takes what Rust reports for its connections. Rust queues each report in this
  # dispatcher's relay (Crier.Native.relay_open/0) and rings the relay's bell, a datagram
  # socket read here through `gen_udp` (active), when the queue had been taken.
  # `relay_take/1` takes a bounded batch: it sends owners what they are told from inside the
  # NIF, and returns what this process does itself:
  #
  #   * `{:crier_request, conn, request}`: start one request process, linked to this one,
  #     so request processes belong to the server's tree;
  #   * `{:crier_exit, pid, ref, reason}`: end an owner with `on_close: :exit` (a NIF cannot
  #     send an exit signal);
  #   * `{:crier_closed, ...}`: emit a stream's close event (only with telemetry).
  #
  # Why a relay and not a message per report: see native/crier_core/src/relay.rs. A message
  # that only looks like a report (a `{:crier_exit, ...}` from anyone) is logged and ignored.
  #
  # A server has several dispatchers, chosen in Rust by connection id, so no one mailbox
  # carries every request. It traps exits: a request process that crashes ends alone, and its
  # exit reason is logged here (`requests` keeps each live one's method and path for that).
  # When the server stops, it ends every request process still linked to it before it exits.

  use GenServer

  alias Crier.{Native, Options, Request, Server}

  @doc false
  @spec start_link({map(), :ets.tid(), pos_integer()}) :: GenServer.on_start()
  def start_link(args), do: GenServer.start_link(__MODULE__, args)

  @impl GenServer
  def init({config, table, index}) do
    Process.flag(:trap_exit, true)

    with {:ok, relay} <- Native.relay_open(),
         {:ok, bell_fd} <- Native.relay_bell(relay),
         {:ok, bell} <- :gen_udp.open(0, [:local, :binary, fd: bell_fd, active: true]) do
      :ets.insert(table, {index, relay})
      [parent | _] = Process.get(:"$ancestors")
      # Each request process gets a copy of what it needs, no more: it is copied per request.
      request_config = Map.take(config, [:name, :target, :on_close, :send_timeout])
      {:ok, %{config: request_config, parent: parent, relay: relay, bell: bell, requests: %{}}}
    else
      {:error, reason} -> {:stop, {:relay, reason}}
    end
  end

  @impl GenServer
  def handle_info({:udp, bell, _address, _port, _ring}, %{bell: bell} = state), do: take(state)
  def handle_info({__MODULE__, :take}, state), do: take(state)

  # Without its bell this dispatcher would never hear of a request again.
  def handle_info({:EXIT, bell, reason}, %{bell: bell} = state),
    do: {:stop, {:relay_bell_closed, reason}, state}

  # A request process ended (its parent's exit is handled by GenServer itself).
  def handle_info({:EXIT, pid, reason}, state) do
    case Map.pop(state.requests, pid) do
      {nil, _requests} ->
        {:noreply, state}

      {line, requests} ->
        Request.log_exit(pid, line, reason)
        {:noreply, %{state | requests: requests}}
    end
  end

  def handle_info(message, state), do: Server.ignore(state, state.config.name, :info, message)

  defp take(state) do
    {left, reports} = Native.relay_take(state.relay)
    state = Enum.reduce(reports, state, &handle_report/2)
    left_behind(left, state)
  end

  # More than one take's worth: the rest after what is already in the mailbox. A report too
  # heavy for a normal scheduler (a request with very many headers): taken on a dirty one.
  defp left_behind(:done, state), do: {:noreply, state}

  defp left_behind(:more, state) do
    send(self(), {__MODULE__, :take})
    {:noreply, state}
  end

  defp left_behind(:heavy, state) do
    {left, reports} = Native.dirty(:relay_take, [state.relay])
    left_behind(left, Enum.reduce(reports, state, &handle_report/2))
  end

  defp handle_report({:crier_request, conn_resource, request}, state) do
    pid = Request.start_link(conn_resource, request, state.config)
    line = {elem(request, 1), elem(request, 2)}
    %{state | requests: Map.put(state.requests, pid, line)}
  end

  defp handle_report({:crier_exit, pid, _ref, reason}, state) do
    Process.exit(pid, {:shutdown, reason})
    state
  end

  # Rust reports stream closes only when telemetry is enabled.
  defp handle_report({:crier_closed, ref, reason, nanos, subscribed}, state) do
    Crier.Telemetry.stream_closed(state.config.name, ref, reason, nanos, subscribed)
    state
  end

  @impl GenServer
  def handle_call(request, _from, state),
    do: Server.ignore(state, state.config.name, :call, request)

  @impl GenServer
  def handle_cast(request, state), do: Server.ignore(state, state.config.name, :cast, request)

  @impl GenServer
  def terminate(_reason, state) do
    {:links, links} = Process.info(self(), :links)
    children = for pid <- links, is_pid(pid), pid != state.parent, do: pid
    stop_all(children, Options.grace())
  end

  # As a supervisor stops its children: `:shutdown`, then `:kill` for those still there
  # after `grace` ms. Returns once all are gone.
  defp stop_all(pids, grace) do
    monitors = Map.new(pids, fn pid -> {Process.monitor(pid), pid} end)
    Enum.each(pids, &Process.exit(&1, :shutdown))
    deadline = System.monotonic_time(:millisecond) + grace
    await_down(monitors, deadline)
  end

  defp await_down(monitors, _deadline) when monitors == %{}, do: :ok

  defp await_down(monitors, deadline) do
    receive do
      {:DOWN, ref, :process, _pid, _reason} -> await_down(Map.delete(monitors, ref), deadline)
    after
      max(deadline - System.monotonic_time(:millisecond), 0) ->
        Enum.each(monitors, fn {_ref, pid} -> Process.exit(pid, :kill) end)
        await_down_killed(monitors)
    end
  end

  defp await_down_killed(monitors) do
    Enum.each(monitors, fn {ref, _pid} ->
      receive do
        {:DOWN, ^ref, :process, _, _} -> :ok
      end
    end)
  end
end
