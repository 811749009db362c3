defmodule Crier.TelemetryTest do
  @moduledoc """
  The `:telemetry` events of `Crier.Telemetry`, captured by a handler: request spans (stop
  and exception), a close event for every stream close (owned and subscribed), an event for
  every overflow drop. Runs only when `:telemetry` is loaded
  (`CRIER_PLUG_PATH=/tmp/plugdeps MIX_ENV=test mix test --only telemetry`); without it, the
  test at the end checks that nothing is reported.
  """
  use ExUnit.Case, async: false

  alias Crier.Test.{FunHandler, RawClient, SseClient}

  @events [
    [:crier, :request, :start],
    [:crier, :request, :stop],
    [:crier, :request, :exception],
    [:crier, :stream, :close],
    [:crier, :stream, :overflow]
  ]

  describe "with telemetry" do
    @describetag :telemetry

    setup do
      test = self()
      id = {__MODULE__, make_ref()}

      :ok =
        apply(:telemetry, :attach_many, [
          id,
          @events,
          fn event, measurements, metadata, _ ->
            send(test, {:event, event, measurements, metadata})
          end,
          nil
        ])

      on_exit(fn -> apply(:telemetry, :detach, [id]) end)
    end

    test "a request is a span: start, then stop, with the conn and the duration" do
      {name, port} =
        FunHandler.start_server(fn conn -> Crier.Conn.send_resp(conn, 200, [], "hi") end)

      client = RawClient.connect(port)
      :ok = RawClient.get(client, "/span?x=1")
      assert {:ok, _} = RawClient.read_until(client, "hi")

      assert_receive {:event, [:crier, :request, :start], %{monotonic_time: _, system_time: _},
                      %{
                        server: ^name,
                        conn: %Crier.Conn{path: "/span", query: "x=1"},
                        telemetry_span_context: ctx
                      }}

      assert_receive {:event, [:crier, :request, :stop], %{duration: duration},
                      %{server: ^name, telemetry_span_context: ^ctx}}

      assert is_integer(duration) and duration >= 0
    end

    test "a handler that raises ends its span as an exception" do
      {_name, port} = FunHandler.start_server(fn _conn -> raise "boom" end)
      client = RawClient.connect(port)
      :ok = RawClient.get(client, "/")
      assert {:ok, _} = RawClient.read_until(client, "500")

      assert_receive {:event, [:crier, :request, :exception], %{duration: _},
                      %{kind: :error, reason: %RuntimeError{message: "boom"}, stacktrace: [_ | _]}}

      refute_received {:event, [:crier, :request, :stop], _, _}
    end

    @tag :plug
    test "a plug that raises ends its span as an exception too" do
      %{port: port} = Crier.Test.Server.start!(%{}, plug: __MODULE__.RaisingPlug)
      client = RawClient.connect(port)
      :ok = RawClient.get(client, "/")
      assert {:ok, _} = RawClient.read_until(client, "500")

      assert_receive {:event, [:crier, :request, :exception], %{duration: _},
                      %{kind: :error, reason: %RuntimeError{message: "plug boom"}}}
    end

    test "an owned stream's close is reported with its reason and duration" do
      test = self()

      {name, port} =
        FunHandler.start_server(fn conn ->
          {:ok, conn} = Crier.sse(conn)
          send(test, {:ref, conn.ref})

          receive do
            {:crier, _, {:error, _}} -> :ok
          end
        end)

      client = SseClient.connect(port, "/")
      assert_receive {:ref, ref}
      SseClient.close(client)

      assert_receive {:event, [:crier, :stream, :close], %{duration: duration},
                      %{server: ^name, ref: ^ref, reason: :closed, subscribed: false}}

      assert duration > 0
    end

    test "a subscribed stream, with no owner, is reported too; an overflow drop has its event" do
      test = self()

      {name, port} =
        FunHandler.start_server(
          fn conn ->
            {:ok, conn} = Crier.sse(conn)
            :ok = Crier.subscribe(conn, "t")
            send(test, {:subscribed, conn.ref})
          end,
          write_queue_bytes: 4096,
          heartbeat: nil
        )

      # A client that never reads: broadcasts fill its queue until it is dropped.
      {:ok, slow} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false, recbuf: 4096])
      :ok = RawClient.get(slow, "/")
      assert_receive {:subscribed, slow_ref}
      # One that leaves.
      leaving = SseClient.connect(port, "/")
      assert_receive {:subscribed, leaving_ref}
      SseClient.close(leaving)

      assert_receive {:event, [:crier, :stream, :close], _,
                      %{ref: ^leaving_ref, reason: :closed, subscribed: true}}

      big = %Crier.Event{data: String.duplicate("x", 64 * 1024)}

      Crier.Test.Wait.until(fn ->
        :ok = Crier.broadcast(name, "t", big)
        Crier.stats(name).closes[:overflow] > 0
      end)

      assert_receive {:event, [:crier, :stream, :overflow], %{duration: _},
                      %{server: ^name, ref: ^slow_ref, reason: :overflow, subscribed: true}}

      assert_receive {:event, [:crier, :stream, :close], _, %{ref: ^slow_ref, reason: :overflow}}
    end
  end

  describe "without telemetry" do
    @describetag :no_telemetry

    test "nothing is emitted and Rust reports no close" do
      refute Crier.Telemetry.enabled?()
      test = self()

      {name, port} =
        FunHandler.start_server(
          fn conn ->
            {:ok, _conn} = Crier.sse(conn)
            send(test, :streaming)

            receive do
              {:crier, _, {:error, _}} -> send(test, :closed)
            end
          end,
          dispatchers: 1
        )

      [dispatcher] = Crier.Test.Server.dispatchers(name)
      :erlang.trace_pattern({Crier.Telemetry, :stream_closed, 5}, true, [:local])
      :erlang.trace(dispatcher, true, [:call])
      client = SseClient.connect(port, "/")
      assert_receive :streaming
      SseClient.close(client)
      assert_receive :closed
      # A request after the close, through the same dispatcher and relay: it is taken after
      # any close report would have been.
      SseClient.connect(port, "/")
      assert_receive :streaming
      :erlang.trace(dispatcher, false, [:call])
      :erlang.trace_pattern({Crier.Telemetry, :stream_closed, 5}, false, [:local])
      refute_received {:trace, ^dispatcher, :call, {Crier.Telemetry, :stream_closed, _}}
    end
  end

  defmodule RaisingPlug do
    @moduledoc false
    def init(opts), do: opts
    def call(_conn, _opts), do: raise("plug boom")
  end
end
