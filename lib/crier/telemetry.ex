defmodule Crier.Telemetry do
  @moduledoc """
  The `:telemetry` events Crier emits. They exist only when `:telemetry` is loaded when Crier
  compiles (Plug apps have it; add `{:telemetry, "~> 1.0"}` otherwise); without it Crier
  emits nothing, and Rust reports nothing for them.

  Times are in `:native` units (convert with `System.convert_time_unit/3`).

  ## Requests

  Every request is a span, run in its request process:

    * `[:crier, :request, :start]` - the request process is about to run the handler or
      plug.
      * Measurements: `monotonic_time`, `system_time`
      * Metadata: `server` (its name), `conn` (the `Crier.Conn` the handler gets),
        `telemetry_span_context`

    * `[:crier, :request, :stop]` - the handler or plug returned.
      * Measurements: `monotonic_time`, `duration`
      * Metadata: as `:start`

    * `[:crier, :request, :exception]` - the handler or plug raised, threw or exited
      (a handler that raised before a response still got a 500).
      * Measurements: `monotonic_time`, `duration`
      * Metadata: as `:start`, plus `kind`, `reason`, `stacktrace`

  ## Streams

    * `[:crier, :stream, :close]` - a stream closed: every close `Crier.stats/1` counts in
      `:closes`, whether a process owned the stream or it was subscribed to topics (with no
      process; Rust reports these).
      * Measurements: `duration` (from the request's head to the close)
      * Metadata: `server`, `ref` (the conn's `ref`), `reason` (`:closed`, `:timeout`,
        `:overflow`, `:shutdown`, `:owner_gone`), `subscribed` (boolean)

    * `[:crier, :stream, :overflow]` - a subscriber too slow for a broadcast was dropped
      (its close is also reported as above, with reason `:overflow`).
      * Measurements: `duration`
      * Metadata: as `[:crier, :stream, :close]`
  """

  @enabled Code.ensure_loaded?(:telemetry)

  @doc "Whether Crier emits telemetry events (`:telemetry` was loaded when it compiled)."
  @spec enabled?() :: boolean()
  def enabled?, do: @enabled

  @doc false
  # Runs `fun` (the request) inside the request span of `conn`.
  @spec span(Crier.Conn.t(), (() -> term())) :: term()
  if @enabled do
    def span(conn, fun) do
      start = System.monotonic_time()
      metadata = %{server: conn.server, conn: conn, telemetry_span_context: make_ref()}
      system_time = System.system_time()

      :telemetry.execute(
        [:crier, :request, :start],
        %{monotonic_time: start, system_time: system_time},
        metadata
      )

      try do
        fun.()
      catch
        kind, reason ->
          exception(start, metadata, kind, reason, __STACKTRACE__)
          :erlang.raise(kind, reason, __STACKTRACE__)
      else
        result ->
          case Process.delete(:crier_telemetry_exception) do
            {kind, reason, stacktrace} -> exception(start, metadata, kind, reason, stacktrace)
            nil -> stop(start, metadata)
          end

          result
      end
    end

    defp stop(start, metadata) do
      now = System.monotonic_time()

      :telemetry.execute(
        [:crier, :request, :stop],
        %{monotonic_time: now, duration: now - start},
        metadata
      )
    end

    defp exception(start, metadata, kind, reason, stacktrace) do
      now = System.monotonic_time()
      measurements = %{monotonic_time: now, duration: now - start}
      metadata = Map.merge(metadata, %{kind: kind, reason: reason, stacktrace: stacktrace})
      :telemetry.execute([:crier, :request, :exception], measurements, metadata)
    end

    @doc false
    # The request process caught what its handler raised (and answered for it): the span
    # ends as an exception, not a stop.
    @spec handler_raised(atom(), term(), Exception.stacktrace()) :: :ok
    def handler_raised(kind, reason, stacktrace) do
      Process.put(:crier_telemetry_exception, {kind, reason, stacktrace})
      :ok
    end

    @doc false
    # A stream close, as Rust reports it to a dispatcher.
    @spec stream_closed(atom(), non_neg_integer(), atom(), non_neg_integer(), boolean()) :: :ok
    def stream_closed(server, ref, reason, nanos, subscribed) do
      measurements = %{duration: System.convert_time_unit(nanos, :nanosecond, :native)}
      metadata = %{server: server, ref: ref, reason: reason, subscribed: subscribed}
      :telemetry.execute([:crier, :stream, :close], measurements, metadata)

      if reason == :overflow,
        do: :telemetry.execute([:crier, :stream, :overflow], measurements, metadata)

      :ok
    end
  else
    def span(_conn, fun), do: fun.()

    @doc false
    def handler_raised(_kind, _reason, _stacktrace), do: :ok

    @doc false
    def stream_closed(_server, _ref, _reason, _nanos, _subscribed), do: :ok
  end
end
