defmodule Crier.Server do
  @moduledoc false
  # One Crier server: owns the Rust listener, starts one process per request, carries out
  # `on_close: :exit`, relays cluster broadcasts, and runs the graceful shutdown when its
  # supervisor stops it.
  #
  # Rust reports here:
  #   {:crier_request, conn_resource, request}  - spawn a request process
  #   {:crier_exit, pid, ref, reason}           - end an :exit-mode owner
  #   :crier_stopped                            - shutdown finished
  # and cluster broadcasts come as {:crier_cluster, message} (see Crier.Cluster), with the
  # sequencer's monitor as {{:crier_cluster, :sequencer_down}, ref, :process, pid, reason}.

  use GenServer
  require Logger

  alias Crier.{Cluster, Native, Request}

  @doc false
  def start_link(config) do
    GenServer.start_link(__MODULE__, config, name: config.name)
  end

  @doc false
  # Where the server's resource lives, read without a call by broadcast/stats/port.
  def resource!(name) do
    :persistent_term.get({Crier, name})
  rescue
    ArgumentError -> raise ArgumentError, "no Crier server named #{inspect(name)} is running"
  end

  @impl GenServer
  def init(config) do
    Process.flag(:trap_exit, true)

    case Native.server_start(config.native, self()) |> Crier.Errors.unwrap!() do
      {:ok, resource} ->
        :persistent_term.put({Crier, config.name}, resource)
        cluster = Cluster.init(config.name, resource)
        {:ok, config |> Map.put(:resource, resource) |> Map.put(:cluster, cluster)}

      {:error, reason} ->
        {:stop, reason}
    end
  end

  @impl GenServer
  def handle_info({:crier_request, conn_resource, request}, state) do
    Request.start(conn_resource, request, state)
    {:noreply, state}
  end

  def handle_info({:crier_exit, pid, _ref, reason}, state) do
    Process.exit(pid, {:shutdown, reason})
    {:noreply, state}
  end

  def handle_info({:crier_cluster, message}, state) do
    {:noreply, %{state | cluster: Cluster.handle(message, state.cluster)}}
  end

  def handle_info({{:crier_cluster, :sequencer_down}, ref, :process, _pid, _reason}, state) do
    {:noreply, %{state | cluster: Cluster.handle({:sequencer_down, ref}, state.cluster)}}
  end

  def handle_info({:EXIT, _pid, _reason}, state), do: {:noreply, state}
  def handle_info(:crier_stopped, state), do: {:noreply, state}

  @impl GenServer
  def terminate(_reason, state) do
    Cluster.leave(state.cluster)
    Native.server_shutdown(state.resource, state.final_event)
    deadline = System.monotonic_time(:millisecond) + state.shutdown_timeout + 6_000
    await_stopped(state.name, deadline)
    :persistent_term.erase({Crier, state.name})
    :ok
  end

  # The drain closes streams with :shutdown; owners with `on_close: :exit` are ended from
  # here as their closes arrive, or they would outlive the server.
  defp await_stopped(name, deadline) do
    receive do
      :crier_stopped ->
        :ok

      {:crier_exit, pid, _ref, reason} ->
        Process.exit(pid, {:shutdown, reason})
        await_stopped(name, deadline)
    after
      max(deadline - System.monotonic_time(:millisecond), 0) ->
        Logger.warning("Crier #{inspect(name)}: shutdown did not finish")
    end
  end
end
