if Code.ensure_loaded?(Plug.Conn.Adapter) do
  defmodule Crier.PlugAdapter do
    @moduledoc """
    Runs a Plug on Crier: a `Plug.Conn.Adapter` whose payload is a `Crier.Conn`.

    Start a server with `plug: {MyRouter, opts}` and each request runs `MyRouter.call/2` in a
    fresh process that owns the connection, exactly as under Cowboy or Bandit:

        {Crier, name: MyApp.Events, port: 4001, plug: {MyApp.Router, []}}

    `opts` go through `MyRouter.init/1` once, when the server starts. When the client
    leaves, the plug process ends at once with exit reason `{:shutdown, :closed}`
    (`on_close: :exit`, the default for plugs) and `Plug.Conn.chunk/2` returns
    `{:error, :closed}` to anything still writing. A response started with
    `content-type: text/event-stream` gets Crier's heartbeat comments while idle.

    What the adapter does with each callback:

      * `send_resp/4`, `send_chunked/3` - as `Crier.Conn.send_resp/4` and
        `Crier.Conn.send_chunked/3`; a `content-length` header given to `send_chunked`
        gives a sized body instead of chunked framing. HEAD gets the head alone.
      * `send_file/6` - a `content-length` head, then the file read 64 KiB at a time, so it
        never sits in memory; `length` may be `:all`.
      * `read_req_body/2` - `Crier.Conn.read_body/2`, with Plug's options and defaults.
      * `inform/3` - a 1xx before the response (nothing for HTTP/1.0 clients).
      * every status line carries `Plug.Conn.Status.reason_phrase/1`'s phrase, so custom
        statuses from `config :plug, :statuses` go out as configured; statuses given as
        atoms (`send_resp(conn, :im_a_teapot, "")`, `plug_status: :not_found`) work
        everywhere.
      * `upgrade/3`, `push/3` - `{:error, :not_supported}`.
      * `get_ssl_data/1` - `nil`: Crier serves plain HTTP; put TLS in the proxy in front.

    The send callbacks return `{:ok, nil, payload}` even when the client already left (as
    Cowboy does); the process learns of the close from Crier itself.

    This module exists only when Plug is loaded at compile time.
    """

    @behaviour Plug.Conn.Adapter

    require Logger

    alias Crier.PlugAdapter.Impl
    alias Plug.Conn.Status

    @doc """
    Serves one request: builds a `%Plug.Conn{}` from `crier_conn`, calls `plug.call/2` with
    the already initialised `opts`, and sends a response the plug left set but unsent.

    An exception (or throw, or exit) in the plug is logged and answered with its
    `Plug.Exception` status (500 for most) when nothing was sent yet, and the connection
    closes after it. After a response started, the process exits with
    `{:shutdown, :plug_error}` instead: what was sent still goes out, then the connection
    closes without ending the body, so the client can tell.
    """
    @spec run(Crier.Conn.t(), module(), Plug.opts()) :: :ok
    def run(%Crier.Conn{} = crier_conn, plug, opts) do
      conn =
        struct!(Plug.Conn, [adapter: {__MODULE__, crier_conn}] ++ Impl.conn_fields(crier_conn))

      try do
        case plug.call(conn, opts) do
          %Plug.Conn{state: :set} = conn -> Plug.Conn.send_resp(conn)
          %Plug.Conn{} -> :ok
          other -> raise "#{inspect(plug)}.call/2 returned #{inspect(other)}, not a %Plug.Conn{}"
        end

        :ok
      rescue
        error -> failed(crier_conn, :error, error, __STACKTRACE__)
      catch
        :exit, reason when reason in [:normal, :shutdown] -> :ok
        :exit, {:shutdown, _} -> :ok
        kind, reason -> failed(crier_conn, kind, reason, __STACKTRACE__)
      end
    end

    # Plug.Router and Plug.ErrorHandler wrap what they rescue in Plug.Conn.WrapperError:
    # the status and the log look at the original.
    defp failed(crier_conn, :error, %Plug.Conn.WrapperError{} = wrapper, _stacktrace),
      do: failed(crier_conn, wrapper.kind, wrapper.reason, wrapper.stack)

    defp failed(crier_conn, kind, reason, stacktrace) do
      Crier.Telemetry.handler_raised(kind, reason, stacktrace)
      # A Plug.Exception may give its status as an atom (plug_status: :im_a_teapot).
      status =
        if kind == :error, do: reason |> Plug.Exception.status() |> Status.code(), else: 500

      message = "Crier: #{crier_conn.method} #{crier_conn.path}: "

      if status >= 500 do
        Logger.error(message <> Exception.format(kind, reason, stacktrace))
      else
        Logger.info(message <> Exception.format_banner(kind, reason, stacktrace))
      end

      if Crier.Native.conn_response_started(crier_conn.resource) do
        # Too late for a status. Ending the process cuts the response: Crier writes what
        # was queued and closes the connection without the last chunk, so the client sees
        # that the body is incomplete.
        exit({:shutdown, :plug_error})
      else
        # The connection closes after the answer, as under Bandit and Cowboy: what the plug
        # left behind (an unread body, say) is unknown.
        {_code, body} = status_line = status_line(status)
        headers = [{"content-type", "text/plain"}, {"connection", "close"}]
        Crier.Conn.send_resp(crier_conn, status_line, headers, body)
        :ok
      end
    end

    # The status as Crier writes it: the code (Plug's atoms go through Status.code/1) and
    # Plug's reason phrase, `config :plug, :statuses` included. A code Plug has no phrase for
    # gets Crier's (none for an unregistered one) instead of an ArgumentError.
    defp status_line(status) do
      code = Status.code(status)

      try do
        {code, Status.reason_phrase(code)}
      rescue
        ArgumentError -> {code, ""}
      end
    end

    @impl true
    def send_resp(payload, status, headers, body),
      do: Impl.send_resp(payload, status_line(status), headers, body)

    @impl true
    def send_file(payload, status, headers, path, offset, length),
      do: Impl.send_file(payload, status_line(status), headers, path, offset, length)

    @impl true
    def send_chunked(payload, status, headers),
      do: Impl.send_chunked(payload, status_line(status), headers)

    @impl true
    defdelegate chunk(payload, body), to: Impl

    @impl true
    defdelegate read_req_body(payload, opts), to: Impl

    @impl true
    def inform(payload, status, headers), do: Impl.inform(payload, status_line(status), headers)

    @impl true
    defdelegate upgrade(payload, protocol, opts), to: Impl

    @impl true
    defdelegate push(payload, path, headers), to: Impl

    @impl true
    defdelegate get_peer_data(payload), to: Impl

    @impl true
    defdelegate get_sock_data(payload), to: Impl

    @impl true
    defdelegate get_ssl_data(payload), to: Impl

    @impl true
    defdelegate get_http_protocol(payload), to: Impl
  end
end
