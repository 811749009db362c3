defmodule Crier.Listener do
  @moduledoc false
  # Owns the Rust server of one Crier server: binds it, makes it reachable by name (in
  # :persistent_term, read by broadcast/stats/port without a call), relays cluster
  # broadcasts, and runs the graceful shutdown when its supervisor stops it.
  #
  # The Rust server monitors this process: if it dies without terminating (killed), the
  # listening socket closes and the streams are shut down. A new incarnation also closes the
  # previous one's socket itself before it binds, so a restart on the same port never races
  # that monitor.
  #
  # Each dispatcher relays `:crier_stopped` here (shutdown finished, its owners told);
  # cluster broadcasts come as `{:crier_cluster, message}` (see Crier.Cluster), with the
  # sequencer's monitor as `{{:crier_cluster, :sequencer_down}, ref, :process, pid, reason}`.

  use GenServer
  require Logger

  alias Crier.{Cluster, Native, Options, Server}

  @doc false
  @spec start_link({map(), :ets.tid()}) :: GenServer.on_start()
  def start_link({config, _table} = args),
    do: GenServer.start_link(__MODULE__, args, name: config.name)

  @impl GenServer
  def init({config, table}) do
    Process.flag(:trap_exit, true)
    relays = table |> :ets.tab2list() |> Enum.sort() |> Enum.map(&elem(&1, 1))
    stop_previous_incarnation(config.name)

    case Native.server_start(config.native, self(), relays) |> Crier.Errors.unwrap!() do
      {:ok, resource} ->
        :persistent_term.put({Crier, config.name}, resource)
        cluster = Cluster.init(config.name, resource)
        state = %{resource: resource, cluster: cluster, relays: length(relays)}
        {:ok, Map.merge(config, state)}

      {:error, reason} ->
        {:stop, reason}
    end
  end

  defp stop_previous_incarnation(name) do
    case :persistent_term.get({Crier, name}, nil) do
      nil -> :ok
      previous -> Native.server_stop_listening(previous)
    end
  end

  @impl GenServer
  def handle_info({:crier_cluster, message}, state) do
    {:noreply, %{state | cluster: Cluster.handle(message, state.cluster)}}
  end

  def handle_info({{:crier_cluster, :sequencer_down}, ref, :process, _pid, _reason}, state) do
    {:noreply, %{state | cluster: Cluster.handle({:sequencer_down, ref}, state.cluster)}}
  end

  def handle_info(:crier_stopped, state), do: {:noreply, state}
  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}

  def handle_info(message, state), do: Server.ignore(state, state.name, :info, message)

  @impl GenServer
  def handle_call(request, _from, state), do: Server.ignore(state, state.name, :call, request)

  @impl GenServer
  def handle_cast(request, state), do: Server.ignore(state, state.name, :cast, request)

  @impl GenServer
  def terminate(_reason, state) do
    # The name goes at once: when the parent was killed, its restart must be able to
    # register a new incarnation while this one drains (which closed its socket first).
    if Process.whereis(state.name) == self(), do: Process.unregister(state.name)
    Cluster.leave(state.cluster)
    Native.server_shutdown(state.resource, state.final_event)
    # Rust drains for :shutdown_timeout, then gives closed streams one grace period.
    deadline = System.monotonic_time(:millisecond) + state.shutdown_timeout + 2 * Options.grace()
    await_stopped(state.name, state.relays, deadline)
    # A new incarnation may have put its own resource there already.
    if :persistent_term.get({Crier, state.name}, nil) == state.resource do
      :persistent_term.erase({Crier, state.name})
    end

    :ok
  end

  # Every dispatcher sends `:crier_stopped` once it has told its owners of their closes: the
  # shutdown is over when all have.
  defp await_stopped(_name, 0, _deadline), do: :ok

  defp await_stopped(name, left, deadline) do
    receive do
      :crier_stopped -> await_stopped(name, left - 1, deadline)
    after
      max(deadline - System.monotonic_time(:millisecond), 0) ->
        Logger.warning("Crier #{inspect(name)}: shutdown did not finish")
    end
  end
end
