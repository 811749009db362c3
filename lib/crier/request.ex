defmodule Crier.Request do
  @moduledoc false
  # The process that serves one request: it takes ownership of the exchange, runs the
  # handler (or the plug, through Crier.PlugAdapter), and tells Rust it is done. Rust then
  # ends the response (last chunk) and reads the connection's next request.

  require Logger

  alias Crier.{Conn, Native}

  @doc false
  # Linked to the calling `Crier.Dispatcher`, which traps exits: the request process ends
  # with its server, and its own end (crash or not) ends nothing else.
  def start_link(conn_resource, request, config) do
    :proc_lib.spawn_link(__MODULE__, :run, [conn_resource, request, config])
  end

  @doc false
  def run(conn_resource, request, config) do
    case Native.conn_set_owner(conn_resource, self(), config.on_close) do
      :ok ->
        conn = Conn.new(conn_resource, request, config.name, config.send_timeout)
        Crier.Telemetry.span(conn, fn -> serve(conn, config.target) end)

      {:error, :closed} ->
        :ok
    end
  end

  defp serve(conn, {:handler, {module, opts}}) do
    try do
      module.call(conn, opts)
    rescue
      error ->
        Crier.Telemetry.handler_raised(:error, error, __STACKTRACE__)
        handler_failed(conn, error, __STACKTRACE__)
    catch
      kind, reason ->
        Crier.Telemetry.handler_raised(kind, reason, __STACKTRACE__)
        handler_failed(conn, {kind, reason}, __STACKTRACE__)
    else
      _ -> finish(conn)
    end
  end

  defp serve(conn, {:plug, {plug, opts}}) do
    adapter = Module.concat([Crier, PlugAdapter])

    if Code.ensure_loaded?(adapter) do
      # run/3 answers what the plug raises. When a started response must be cut short it
      # exits instead of returning: finish/1 would end the body cleanly, while a dead owner's
      # stream is flushed and closed without its last chunk.
      adapter.run(conn, plug, opts)
      finish(conn)
    else
      Logger.error("Crier: :plug given but Plug is not available; answering 500")
      Conn.send_resp(conn, 500, [], "Plug is not available")
      finish(conn)
    end
  end

  @doc false
  # Why a request process ended, as its dispatcher sees the exit: nothing for a normal end
  # or a shutdown; otherwise the reason, logged. A linked process that exits abnormally (a
  # crashed Task.async, a spawn_link) kills the request process before any code of its own
  # can answer or log (trapping exits here would turn `on_close: :exit` into a message the
  # plug never reads): the client's answer then comes from Rust (the owner is monitored: a
  # 500 and a close, or a cut stream), and the reason from here.
  @spec log_exit(pid(), {String.t(), String.t()}, term()) :: :ok
  def log_exit(_pid, _request, reason) when reason in [:normal, :shutdown], do: :ok
  def log_exit(_pid, _request, {:shutdown, _}), do: :ok

  def log_exit(pid, {method, path}, reason) do
    Logger.error(
      "Crier: #{method} #{path}: the request process #{inspect(pid)} exited before it was " <>
        "done: " <> Exception.format_exit(reason)
    )
  end

  defp finish(conn) do
    unless Native.conn_finish(conn.resource) do
      Logger.error(
        "Crier: #{conn.method} #{conn.path} returned without a response; answering 500"
      )

      respond_500(conn)
    end
  end

  # An exception before any response gives a 500, and the connection closes after it: the
  # handler's state is unknown, as Bandit and Cowboy reason. After a response started, the
  # stream is cut: this process exits, and a dead owner's stream is flushed and closed without
  # its last chunk, so the client sees the truncation instead of a clean end.
  defp handler_failed(conn, error, stacktrace) do
    Logger.error(
      "Crier: handler crashed on #{conn.method} #{conn.path}: " <>
        Exception.format(:error, error, stacktrace)
    )

    if Native.conn_response_started(conn.resource) do
      exit({:shutdown, :handler_crashed})
    else
      respond_500(conn)
    end
  end

  # Also the answer to a handler that returned without one: a bug, so the connection ends.
  defp respond_500(conn) do
    Native.conn_send_resp(
      conn.resource,
      500,
      [{"content-type", "text/plain"}, {"connection", "close"}],
      "Internal Server Error"
    )

    Native.conn_finish(conn.resource)
  end
end
