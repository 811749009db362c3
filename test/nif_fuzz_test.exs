defmodule Crier.NifFuzzTest do
  @moduledoc """
  Every NIF in `Crier.Native`, called with random terms (PropEr, from Debian's
  `erlang-proper`): each call returns or raises, a Rust panic never escapes as anything but
  an exception (and is reported here as a failure, being a bug), and the VM lives on.

  The arguments mix arbitrary terms with the ones that reach deep: live server and
  connection resources (with real clients behind them), headers, events, option maps,
  iodata, pids, the atoms the NIFs know, and integers at the edges of every width.
  """
  # Not async: run alone, so neither timing-sensitive tests here nor elsewhere share the cores.
  use ExUnit.Case, async: false

  alias Crier.Native
  alias Crier.Test.RawClient

  @moduletag timeout: 300_000

  @rounds 6
  @calls_per_round 600

  # Everything exported but the loader.
  @nifs for {name, arity} <- Native.__info__(:functions),
            name not in [:load_nif, :__info__, :module_info],
            do: {name, arity}

  @max_arity @nifs |> Enum.map(&elem(&1, 1)) |> Enum.max()

  test "every NIF returns or raises on random terms" do
    assert length(@nifs) >= 20, "NIF list looks wrong: #{inspect(@nifs)}"

    for round <- 1..@rounds do
      ctx = setup_round()

      property =
        :proper.forall(call_gen(ctx), fn {name, args} ->
          call(name, Enum.take(args, arity(name)))
        end)

      result =
        :proper.quickcheck(property, [{:numtests, @calls_per_round}, {:on_output, &quiet/2}])

      teardown_round(ctx)

      assert result == true,
             "round #{round}: a NIF panicked; counterexample: " <>
               inspect(:proper.counterexample(), limit: :infinity)
    end

    # Still alive, and still serving.
    {relay, _bell} = Crier.Test.Relay.open()
    {:ok, server} = Native.server_start(native_options(), self(), [relay])
    assert is_integer(Native.server_port(server))
    Native.server_shutdown(server, nil)
  end

  defp quiet(_format, _args), do: :ok

  defp arity(name), do: Keyword.fetch!(@nifs, name)

  # True unless the NIF panicked; any return value or exception is fine.
  defp call(name, args) do
    try do
      track_servers(apply(Native, name, args))
      true
    catch
      # rustler turns a panic into this error; `catch` sees it before Elixir wraps it.
      :error, :nif_panicked -> false
      _kind, _reason -> true
    end
  end

  # Servers the fuzzing started are stopped at the end of the round.
  defp track_servers({:ok, resource}) when is_reference(resource) do
    Process.put(:fuzz_servers, [resource | Process.get(:fuzz_servers, [])])
  end

  defp track_servers(_), do: :ok

  # A server reporting to this process, with a few live connections (some streaming, some
  # not yet answered) and one already closed.
  defp setup_round do
    options = native_options(heartbeat: 50, send_timeout: 1_000)
    relay = Crier.Test.Relay.open()
    {:ok, server} = Native.server_start(options, self(), [elem(relay, 0)])
    port = Native.server_port(server)

    clients =
      for _ <- 1..4 do
        client = RawClient.connect(port)
        :ok = RawClient.get(client, "/fuzz")
        client
      end

    conns =
      for {{conn, _request}, i} <- Enum.with_index(Crier.Test.Relay.requests(relay, 4), 1) do
        :ok = Native.conn_set_owner(conn, self(), :message)
        if rem(i, 2) == 0, do: :ok = Native.conn_send_chunked(conn, 200, [], true)
        conn
      end

    :ok = Native.conn_close(hd(conns), :closed)
    Process.put(:fuzz_servers, [])
    dead_pid = spawn(fn -> :ok end)
    %{server: server, relay: elem(relay, 0), clients: clients, conns: conns, dead_pid: dead_pid}
  end

  defp teardown_round(ctx) do
    for server <- [ctx.server | Process.get(:fuzz_servers, [])] do
      try do
        Native.server_shutdown(server, nil)
      rescue
        _ -> :ok
      end
    end

    Enum.each(ctx.clients, &:gen_tcp.close/1)
    flush()
  end

  defp flush do
    receive do
      _ -> flush()
    after
      0 -> :ok
    end
  end

  # ---- generators --------------------------------------------------------------------

  # Mostly calls whose arguments have the types the NIF expects (with values chosen to hurt),
  # so the calls get past decoding into the core; the rest, arbitrary terms anywhere.
  defp call_gen(ctx) do
    typed =
      for {name, arity} <- @nifs do
        kinds = signature(name, arity)

        args =
          Enum.map(kinds, &:proper_types.frequency([{6, kind_gen(&1, ctx)}, {1, arg_gen(ctx)}]))

        pad = List.duplicate(:proper_types.exactly(nil), @max_arity - length(kinds))
        :proper_types.tuple([:proper_types.exactly(name), :proper_types.fixed_list(args ++ pad)])
      end

    random =
      :proper_types.tuple([
        :proper_types.elements(Keyword.keys(@nifs)),
        :proper_types.vector(@max_arity, arg_gen(ctx))
      ])

    :proper_types.frequency([{3, :proper_types.oneof(typed)}, {1, random}])
  end

  # What each NIF takes; a NIF added later gets arbitrary terms after its resource.
  defp signature(name, arity) do
    case {name, arity} do
      {:server_start, 3} -> [:options, :pid, :relays]
      {:relay_take, 1} -> [:relay]
      {:relay_bell, 1} -> [:relay]
      {:server_broadcast, 3} -> [:server, :text, :event]
      {:server_broadcast_sequenced, 5} -> [:server, :text, :event, :size, :size]
      {:server_set_replay, 3} -> [:server, :text, :size]
      {:server_shutdown, 2} -> [:server, :iodata_or_nil]
      {:encode_event, 1} -> [:event]
      {:conn_set_owner, 3} -> [:conn, :pid, :atom]
      {:conn_send_chunked, 4} -> [:conn, :status, :headers, :boolean]
      {:conn_send_resp, 4} -> [:conn, :status, :headers, :iodata]
      {:conn_send_head, 4} -> [:conn, :status, :headers, :size]
      {:conn_inform, 3} -> [:conn, :status, :headers]
      {:conn_chunk, 2} -> [:conn, :iodata]
      {:conn_close, 2} -> [:conn, :atom]
      {:conn_read_body, 2} -> [:conn, :size]
      {:conn_subscribe, 3} -> [:conn, :topics, :text_or_nil]
      {:conn_unsubscribe, 2} -> [:conn, :text]
      {:dirty, 2} -> [:dirty_name, :dirty_args]
      _ -> resource_then_any(Atom.to_string(name), arity)
    end
  end

  defp resource_then_any(_name, 0), do: []
  defp resource_then_any("conn_" <> _, arity), do: [:conn | List.duplicate(:any, arity - 1)]
  defp resource_then_any("server_" <> _, arity), do: [:server | List.duplicate(:any, arity - 1)]
  defp resource_then_any(_name, arity), do: List.duplicate(:any, arity)

  defp kind_gen(kind, ctx) do
    case kind do
      :server ->
        :proper_types.elements([ctx.server])

      :conn ->
        :proper_types.elements(ctx.conns)

      :pid ->
        :proper_types.elements([self(), ctx.dead_pid])

      :relays ->
        :proper_types.list(:proper_types.elements([ctx.relay, self()]))

      :relay ->
        :proper_types.elements([ctx.relay])

      :atom ->
        :proper_types.elements(known_atoms())

      :boolean ->
        :proper_types.elements([true, false])

      :status ->
        :proper_types.oneof([:proper_types.elements(edge_integers()), :proper_types.integer()])

      :size ->
        :proper_types.oneof([:proper_types.elements(edge_integers()), :proper_types.nat()])

      :headers ->
        headers_gen()

      :iodata ->
        iodata_gen()

      :text ->
        text_gen()

      :text_or_nil ->
        :proper_types.oneof([:proper_types.exactly(nil), text_gen()])

      :topics ->
        :proper_types.list(text_gen())

      :event ->
        event_gen()

      :iodata_or_nil ->
        :proper_types.oneof([:proper_types.exactly(nil), iodata_gen()])

      :options ->
        options_gen()

      :dirty_name ->
        :proper_types.elements(
          ~w(conn_send_chunked conn_send_resp conn_send_head conn_inform conn_chunk
             conn_subscribe server_broadcast server_broadcast_sequenced encode_event other)a
        )

      :dirty_args ->
        :proper_types.oneof([
          :proper_types.list(arg_gen(ctx)),
          :proper_types.vector(4, arg_gen(ctx)),
          :proper_types.any()
        ])

      :any ->
        arg_gen(ctx)
    end
  end

  defp arg_gen(ctx) do
    :proper_types.frequency([
      {4, :proper_types.any()},
      {4, :proper_types.elements([ctx.server | ctx.conns])},
      {2, :proper_types.integer()},
      {2, :proper_types.elements(edge_integers())},
      {2, :proper_types.binary()},
      {2, iodata_gen()},
      {2, headers_gen()},
      {2, event_gen()},
      {2, options_gen()},
      {2, :proper_types.elements(known_atoms() ++ [self(), ctx.dead_pid, make_ref()])},
      {1, :proper_types.list(:proper_types.binary())}
    ])
  end

  defp edge_integers do
    for bits <- [8, 16, 31, 32, 63, 64, 65], delta <- [-1, 0, 1], sign <- [1, -1] do
      sign * (Bitwise.bsl(1, bits) + delta)
    end ++ [0, 1, 99, 100, 101, 199, 200, 204, 304, 999, 1000]
  end

  defp known_atoms do
    [nil, true, false, :ok, :error, :message, :exit, :closed, :timeout, :overflow] ++
      [:shutdown, :owner_gone, :infinity, :undefined]
  end

  defp iodata_gen do
    leaf =
      :proper_types.oneof([
        :proper_types.binary(),
        :proper_types.byte(),
        :proper_types.integer(),
        :proper_types.bitstring()
      ])

    :proper_types.list(:proper_types.oneof([leaf, :proper_types.list(leaf)]))
  end

  defp text_gen do
    :proper_types.frequency([
      {3, :proper_types.elements(["x", "", "a\r\nb", "nul\0", "é", "content-length", "date"])},
      {2, :proper_types.binary()},
      {1, :proper_types.any()}
    ])
  end

  defp headers_gen, do: :proper_types.list(:proper_types.tuple([text_gen(), text_gen()]))

  defp event_gen do
    keys = [:id, :event, :data, :comment, :retry, :__struct__, "data"]
    value = :proper_types.oneof([text_gen(), :proper_types.integer(), :proper_types.any()])
    map_gen(keys, value)
  end

  # Server options with random values; never a fixed port, so no test's port is taken.
  defp options_gen do
    keys =
      [:max_request_line, :max_header_bytes, :max_headers, :max_body, :header_timeout] ++
        [:keepalive_timeout, :write_queue_bytes, :send_timeout, :heartbeat] ++
        [:shutdown_timeout, :max_connections, :tcp_keepalive, :tcp_user_timeout, :backlog] ++
        [:replay, :ip, :close_grace, :telemetry]

    value =
      :proper_types.oneof([
        :proper_types.elements(edge_integers() ++ [nil, {127, 0, 0, 1}, {1, 2, 3, 4}]),
        :proper_types.any()
      ])

    # Random values over a valid map: every key must be there, or the NIF looks no further.
    valid = native_options()

    :proper_types.bind(
      map_gen(keys, value),
      &(valid |> Map.merge(&1) |> Map.put(:port, 0)),
      false
    )
  end

  # The options map Crier.Options gives the NIF, on a free port.
  defp native_options(opts \\ []) do
    Crier.Options.validate!([name: :fuzz, handler: Crier.Test.FunHandler, port: 0] ++ opts).native
  end

  defp map_gen(keys, value) do
    pairs = :proper_types.list(:proper_types.tuple([:proper_types.elements(keys), value]))
    :proper_types.bind(pairs, &Map.new/1, false)
  end
end
