defmodule Crier.Dispatcher do
  @moduledoc false
  # Starts one process per request it is handed by Rust (`{:crier_request, conn, request}`),
  # linked to itself, so request processes belong to the server's tree; ends owners with
  # `on_close: :exit` (`{:crier_exit, pid, ref, reason}`: a NIF cannot send an exit signal).
  # A server has several, chosen in Rust by connection id, so no one mailbox carries every
  # request. It traps exits: a request process that crashes ends alone, and its exit reason
  # is logged here (`requests` keeps each live one's method and path for that). When the
  # server stops, it ends every request process still linked to it before it exits.

  use GenServer

  alias Crier.{Options, Request, Server}

  @doc false
  @spec start_link({map(), :ets.tid(), pos_integer()}) :: GenServer.on_start()
  def start_link(args), do: GenServer.start_link(__MODULE__, args)

  @impl GenServer
  def init({config, table, index}) do
    Process.flag(:trap_exit, true)
    :ets.insert(table, {index, self()})
    [parent | _] = Process.get(:"$ancestors")
    # Each request process gets a copy of what it needs, no more: it is copied per request.
    request_config = Map.take(config, [:name, :target, :on_close, :send_timeout])
    {:ok, %{config: request_config, parent: parent, requests: %{}}}
  end

  @impl GenServer
  def handle_info({:crier_request, conn_resource, request}, state)
      when is_reference(conn_resource) and is_tuple(request) and tuple_size(request) > 2 do
    pid = Request.start_link(conn_resource, request, state.config)
    line = {elem(request, 1), elem(request, 2)}
    {:noreply, %{state | requests: Map.put(state.requests, pid, line)}}
  end

  def handle_info({:crier_exit, pid, _ref, reason}, state) do
    Process.exit(pid, {:shutdown, reason})
    {:noreply, state}
  end

  # Rust reports stream closes here only when telemetry is enabled.
  def handle_info({:crier_closed, ref, reason, nanos, subscribed}, state) do
    Crier.Telemetry.stream_closed(state.config.name, ref, reason, nanos, subscribed)
    {:noreply, state}
  end

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
