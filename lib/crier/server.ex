defmodule Crier.Server do
  @moduledoc false
  # One Crier server: a supervisor of
  #
  #   * `Crier.Dispatcher` processes (`:dispatchers` of them), which take what Rust reports
  #     through their relays, start the request processes, linked to themselves, and carry
  #     out `on_close: :exit`;
  #   * one `Crier.Listener`, registered under the server's name, which owns the Rust server
  #     (the listening socket, every connection), relays cluster broadcasts, and runs the
  #     graceful shutdown.
  #
  # The name goes to the listener, not to this supervisor: a process anyone can address by
  # name must survive whatever it is sent, and a supervisor crashes on an unknown cast.
  #
  # Children stop in the reverse order they start: the listener drains its streams first,
  # while the dispatchers still serve `on_close: :exit`; then the dispatchers end what is
  # left of the request processes. One of them dying restarts them all (`:one_for_all`): the
  # Rust server knows the dispatchers by their relays. The dispatchers put their relays in a
  # table the supervisor owns, where the listener, started after them, reads them.

  use Supervisor
  require Logger

  alias Crier.{Dispatcher, Listener, Options}

  @doc false
  @spec start_link(map()) :: Supervisor.on_start()
  def start_link(config) do
    case Supervisor.start_link(__MODULE__, config) do
      # A listener that cannot bind says why, as `Crier.start_link/1` promises.
      {:error, {:shutdown, {:failed_to_start_child, Listener, reason}}} -> {:error, reason}
      other -> other
    end
  end

  @doc false
  # Where the server's resource lives, read without a call by broadcast/stats/port.
  @spec resource!(atom()) :: reference()
  def resource!(name) do
    :persistent_term.get({Crier, name})
  rescue
    ArgumentError -> raise ArgumentError, "no Crier server named #{inspect(name)} is running"
  end

  @doc false
  # What a server process does with a message, call or cast it does not expect: logs it and
  # goes on (a call is answered `{:error, :unknown_call}`), as a GenServer callback result.
  @spec ignore(term(), atom(), :info | :call | :cast, term()) ::
          {:noreply, term()} | {:reply, {:error, :unknown_call}, term()}
  def ignore(state, name, kind, message) do
    Logger.warning("Crier #{inspect(name)} ignored an unexpected #{kind}: #{inspect(message)}")
    if kind == :call, do: {:reply, {:error, :unknown_call}, state}, else: {:noreply, state}
  end

  @impl Supervisor
  def init(config) do
    table = :ets.new(__MODULE__, [:public, read_concurrency: true])

    dispatchers =
      for index <- 1..config.dispatchers do
        Supervisor.child_spec({Dispatcher, {config, table, index}}, id: {Dispatcher, index})
      end

    listener = %{
      id: Listener,
      start: {Listener, :start_link, [{config, table}]},
      # The drain takes up to :shutdown_timeout, its end up to two grace periods more.
      shutdown: config.shutdown_timeout + 3 * Options.grace()
    }

    Supervisor.init(dispatchers ++ [listener], strategy: :one_for_all)
  end
end
