defmodule Crier.Options do
  @moduledoc false
  # The one schema of `Crier.start_link/1`'s options: key, type, default and doc of each. It
  # generates the option docs in `Crier`'s moduledoc, refuses unknown keys, checks every
  # type before anything starts, and gives the NIF every native option with its value (the
  # Rust side keeps no defaults of its own for them). Nothing is clamped: a value out of
  # range raises.

  @u32 4_294_967_295
  @i32 2_147_483_647
  @u64 18_446_744_073_709_551_615

  # After the drain, how long closed streams may flush (Rust), and from it every other
  # shutdown margin: the listener's wait for the end, the supervisor's before a kill, the
  # dispatchers' for their request processes to go. One value, so they stay in order.
  @grace 5_000

  @schema [
    name: [
      type: :atom,
      required: true,
      doc: "the server's name, used by `broadcast/4`, `stats/1`, `port/1`."
    ],
    handler: [
      type: :module_opts,
      doc: "a `Crier.Handler`. Give `:handler` or `:plug`, not both."
    ],
    plug: [type: :module_opts, doc: "any Plug (needs Plug loaded)."],
    port: [
      type: {:integer, 0..65_535},
      default: 4000,
      doc: "TCP port; 0 picks a free one (see `port/1`)."
    ],
    ip: [type: :ip, default: {127, 0, 0, 1}, doc: "address to listen on."],
    on_close: [
      type: {:in, [:message, :exit]},
      default: nil,
      default_doc: "`:message` for handlers, `:exit` for plugs",
      doc: "how a stream's owner learns of its close: a message, or an exit (see `Crier.Conn`)."
    ],
    dispatchers: [
      type: {:integer, 1..1024},
      default: nil,
      default_doc: "one per online scheduler",
      doc:
        "processes that start request processes and carry out `on_close: :exit`; a connection always goes through the same one."
    ],
    max_request_line: [
      type: {:integer, 1..@u32},
      default: 8192,
      native: true,
      doc: "bytes; longer request lines get 414."
    ],
    max_header_bytes: [
      type: {:integer, 1..@u32},
      default: 16_384,
      native: true,
      doc: "bytes of header block; more gets 431."
    ],
    max_headers: [
      type: {:integer, 1..@u32},
      default: 100,
      native: true,
      doc: "header fields; more get 431."
    ],
    max_body: [
      type: {:integer, 0..@u64},
      default: 8_388_608,
      native: true,
      doc: "bytes of request body; more gets 413."
    ],
    header_timeout: [
      type: {:integer, 1..@u32},
      default: 10_000,
      native: true,
      doc:
        "ms from a request's first byte until its head is complete (absolute, not per read); later gets 408. An HTTP/2 connection must open its first stream within it."
    ],
    keepalive_timeout: [
      type: {:integer, 0..@u32},
      default: 60_000,
      native: true,
      doc:
        "ms a keep-alive connection may idle between requests, and an HTTP/2 connection with no open stream between streams (then closed with GOAWAY `NO_ERROR`; its first stream must come within `:header_timeout`)."
    ],
    write_queue_bytes: [
      type: {:integer, 1..@u64},
      default: 262_144,
      native: true,
      doc:
        "bytes a stream may have queued before `Crier.Conn.chunk/2` waits. A subscriber is dropped with `:overflow` when its socket takes no more while more than this is left of its broadcasts, or when a burst would queue twice this before it could write (the most a stopped reader holds)."
    ],
    send_timeout: [
      type: {:integer, 0..@u32},
      default: 15_000,
      native: true,
      doc: "ms a full queue may make no progress before the stream closes with `:timeout`."
    ],
    heartbeat: [
      type: {:or_nil, {:integer, 1..@u32}},
      default: 15_000,
      native: true,
      doc: "ms of idleness after which an SSE stream gets a `:` comment line, or `nil` for none."
    ],
    tcp_keepalive: [
      type: {:or_nil, {:integer, 1..@u32}},
      default: 30_000,
      native: true,
      doc: "ms of idleness before TCP keepalive probes, or `nil`."
    ],
    tcp_user_timeout: [
      type: {:or_nil, {:integer, 1..@u32}},
      default: 30_000,
      native: true,
      doc:
        "ms sent data may stay unacknowledged before the kernel drops the connection (`TCP_USER_TIMEOUT`), or `nil`."
    ],
    shutdown_timeout: [
      type: {:integer, 0..@u32},
      default: 5_000,
      native: true,
      doc: "ms queues may drain when the server stops."
    ],
    final_event: [
      type: {:or_nil, :event},
      default: nil,
      doc: "a `Crier.Event` sent to every SSE stream when the server stops."
    ],
    max_connections: [
      type: {:integer, 1..@u64},
      default: 1_000_000,
      native: true,
      doc: "open connections; the next gets 503."
    ],
    backlog: [type: {:integer, 1..@i32}, default: 4096, native: true, doc: "listen backlog."],
    replay: [
      type: {:integer, 0..@u32},
      default: 0,
      native: true,
      doc:
        "events each topic keeps for `Last-Event-ID` replay, unless set per topic with `set_replay/3` (0 is off)."
    ],
    h2_max_concurrent_streams: [
      type: {:integer, 1..@u32},
      default: 256,
      native: true,
      doc:
        "HTTP/2 streams one connection may hold open: a browser puts every tab of an origin on one connection and each SSE stream stays open, so this is how many tabs one browser keeps live (RFC 9113 asks for at least 100)."
    ],
    h2_initial_window_size: [
      type: {:integer, 0..2_147_483_647},
      default: 65_535,
      native: true,
      doc:
        "bytes of request body an HTTP/2 client may send per stream ahead of the owner's reads."
    ],
    h2_max_header_list_size: [
      type: {:integer, 1..@u32},
      default: 24_576,
      native: true,
      doc:
        "bytes of decoded HTTP/2 header list (HPACK bombs, CONTINUATION floods); past it, 431 or GOAWAY."
    ],
    h2_max_pending_accept_reset_streams: [
      type: {:integer, 1..@u32},
      default: 20,
      native: true,
      doc:
        "HTTP/2 streams a client may open and reset before the server took them (rapid reset, CVE-2023-44487); past it, GOAWAY."
    ],
    h2_ping_interval: [
      type: {:or_nil, {:integer, 1..@u32}},
      default: 30_000,
      native: true,
      doc:
        "ms between the PINGs that find a dead HTTP/2 peer behind a proxy or NAT, or `nil` for none."
    ],
    h2_ping_timeout: [
      type: {:integer, 1..@u32},
      default: 15_000,
      native: true,
      doc:
        "ms a PING may go unanswered before the connection closes and every owner on it is told `:timeout`."
    ],
    h2_max_control_frames_per_second: [
      type: {:or_nil, {:integer, 1..@u32}},
      default: 100,
      native: true,
      doc:
        "SETTINGS and PING frames an HTTP/2 client may send per second, beyond one for each DATA or HEADERS frame the server sent it (SETTINGS and PING floods, CVE-2019-9512 and CVE-2019-9515: h2 answers each, which costs CPU, not memory); past it, GOAWAY `ENHANCE_YOUR_CALM` and every owner on the connection is told `:closed`. `nil` for no limit."
    ],
    certfile: [
      type: {:or_nil, :string},
      default: nil,
      doc:
        "TLS: the path of the certificate chain's PEM file, end-entity first. With a key, the server speaks HTTPS, HTTP/2 and HTTP/1.1 chosen by ALPN, and a handshake must finish within `:header_timeout`; a certificate or key that cannot be used, or a pair that does not match, makes `start_link/1` return `{:error, {:tls, why}}`."
    ],
    keyfile: [
      type: {:or_nil, :string},
      default: nil,
      doc: "TLS: the path of the private key's PEM file (PKCS#8, PKCS#1 or SEC1)."
    ],
    cert: [
      type: {:or_nil, :cert},
      default: nil,
      doc: "TLS: the certificate chain in memory instead of `:certfile`."
    ],
    key: [
      type: {:or_nil, :key},
      default: nil,
      doc: "TLS: the private key in memory instead of `:keyfile`."
    ],
    alpn: [
      type: {:or_nil, {:subset, ["h2", "http/1.1"]}},
      default: nil,
      default_doc: ~s(`["h2", "http/1.1"]`),
      doc: "TLS: the protocols offered through ALPN, in order of preference."
    ]
  ]

  @keys Keyword.keys(@schema)
  @native_keys for {key, spec} <- @schema, spec[:native], do: key

  @doc false
  @spec grace() :: non_neg_integer()
  def grace, do: @grace

  @doc false
  # The option list of Crier's moduledoc, from the schema.
  @spec docs() :: String.t()
  def docs do
    Enum.map_join(@schema, "\n", fn {key, spec} ->
      default =
        cond do
          spec[:required] ->
            " Required."

          spec[:default_doc] ->
            " Default is #{spec[:default_doc]}."

          Keyword.has_key?(spec, :default) and spec[:default] != nil ->
            " Default is `#{inspect(spec[:default])}`."

          true ->
            ""
        end

      "  * `#{inspect(key)}` - #{spec[:doc]} #{capitalize_first(describe(spec[:type]))}.#{default}"
    end)
  end

  defp capitalize_first(<<first::utf8, rest::binary>>), do: String.upcase(<<first::utf8>>) <> rest

  @doc false
  @spec validate!(keyword()) :: map()
  def validate!(opts) do
    unless is_list(opts) and Keyword.keyword?(opts) do
      raise ArgumentError, "Crier options must be a keyword list, got: #{inspect(opts)}"
    end

    case Enum.uniq(Keyword.keys(opts)) -- @keys do
      [] ->
        :ok

      unknown ->
        raise ArgumentError, "unknown Crier options #{inspect(unknown)}; known: #{inspect(@keys)}"
    end

    # A key given twice takes its last value, as `Map.new/1` and later-overrides-earlier
    # option lists want.
    given = Map.new(opts)
    values = Map.new(@schema, fn {key, spec} -> {key, value!(given, key, spec)} end)
    target = target!(values)
    on_close = values.on_close || if(elem(target, 0) == :plug, do: :exit, else: :message)

    native =
      values
      |> Map.take(@native_keys)
      |> Map.merge(%{
        ip: ip!(values.ip),
        port: values.port,
        close_grace: @grace,
        telemetry: Crier.Telemetry.enabled?()
      })
      |> Map.merge(Crier.Options.TLS.native(values))

    %{
      name: values.name,
      target: target,
      on_close: on_close,
      dispatchers: values.dispatchers || System.schedulers_online(),
      send_timeout: values.send_timeout,
      shutdown_timeout: values.shutdown_timeout,
      final_event: values.final_event && Crier.Event.encode(values.final_event),
      native: native
    }
  end

  defp value!(given, key, spec) do
    case Map.fetch(given, key) do
      {:ok, value} ->
        if valid?(spec[:type], value) do
          value
        else
          raise ArgumentError,
                "#{inspect(key)} must be #{describe(spec[:type])}, got: #{inspect(value)}"
        end

      :error ->
        if spec[:required], do: raise(ArgumentError, "Crier needs a #{inspect(key)}")
        spec[:default]
    end
  end

  defp valid?(:atom, value), do: is_atom(value) and value != nil
  defp valid?(:module_opts, {module, _opts}), do: is_atom(module) and module != nil
  defp valid?(:module_opts, module), do: is_atom(module) and module != nil
  defp valid?({:integer, range}, value), do: is_integer(value) and value in range
  defp valid?({:in, values}, value), do: value in values
  defp valid?({:or_nil, _type}, nil), do: true
  defp valid?({:or_nil, type}, value), do: valid?(type, value)
  defp valid?(:event, value), do: is_map(value)
  defp valid?(:ip, value), do: is_tuple(value) or is_binary(value)
  defp valid?(:string, value), do: is_binary(value)
  defp valid?(:cert, value), do: is_binary(value) or (is_list(value) and value != [])
  defp valid?(:key, value), do: is_binary(value) or (is_tuple(value) and tuple_size(value) == 2)

  defp valid?({:subset, values}, list),
    do: is_list(list) and list != [] and Enum.all?(list, &(&1 in values))

  defp describe(:atom), do: "an atom"
  defp describe(:module_opts), do: "a module or `{module, opts}`"

  defp describe({:integer, %Range{first: first, last: last}}),
    do: "an integer in #{first}..#{last}"

  defp describe({:in, values}), do: "one of #{Enum.map_join(values, ", ", &inspect/1)}"
  defp describe({:or_nil, type}), do: "#{describe(type)}, or nil"
  defp describe(:event), do: "a %Crier.Event{}"
  defp describe(:ip), do: "an IP address (a tuple, or a string to parse)"
  defp describe(:string), do: "a path"
  defp describe(:cert), do: "PEM, DER or a list of DER"
  defp describe(:key), do: "PEM, or `{:RSAPrivateKey | :ECPrivateKey | :PrivateKeyInfo, der}`"

  defp describe({:subset, values}),
    do: "a non-empty list of #{Enum.map_join(values, ", ", &inspect/1)}"

  defp target!(%{handler: nil, plug: nil}),
    do: raise(ArgumentError, "Crier needs a :handler or a :plug")

  defp target!(%{handler: handler, plug: nil}), do: {:handler, module_and_opts(handler)}

  defp target!(%{handler: nil, plug: plug}),
    do: {:plug, plug |> module_and_opts() |> init_plug!()}

  defp target!(_), do: raise(ArgumentError, "give Crier a :handler or a :plug, not both")

  defp module_and_opts({module, opts}), do: {module, opts}
  defp module_and_opts(module), do: {module, []}

  # A plug's opts go through init/1 once, when the server starts, as Cowboy and Bandit do.
  defp init_plug!({plug, plug_opts}) do
    unless Code.ensure_loaded?(plug) and function_exported?(plug, :init, 1) do
      raise ArgumentError, ":plug must be a module with init/1 and call/2, got: #{inspect(plug)}"
    end

    {plug, plug.init(plug_opts)}
  end

  defp ip!(ip) when is_binary(ip) do
    case :inet.parse_address(String.to_charlist(ip)) do
      {:ok, parsed} -> parsed
      {:error, _} -> raise ArgumentError, ":ip must be an IP address, got: #{inspect(ip)}"
    end
  end

  defp ip!(ip) do
    if :inet.is_ip_address(ip),
      do: ip,
      else: raise(ArgumentError, ":ip must be an IP address, got: #{inspect(ip)}")
  end
end
