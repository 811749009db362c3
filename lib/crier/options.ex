defmodule Crier.Options do
  @moduledoc false
  # Validates the options of `Crier.start_link/1` and turns them into the map the NIF reads.
  # The defaults are documented in `Crier`'s moduledoc; keep the two in step.

  @native_keys [
    :max_request_line,
    :max_header_bytes,
    :max_headers,
    :max_body,
    :header_timeout,
    :keepalive_timeout,
    :write_queue_bytes,
    :send_timeout,
    :heartbeat,
    :shutdown_timeout,
    :max_connections,
    :tcp_keepalive,
    :tcp_user_timeout,
    :backlog,
    :replay
  ]

  @defaults [
    ip: {127, 0, 0, 1},
    port: 4000,
    on_close: nil,
    send_timeout: 15_000,
    shutdown_timeout: 5_000,
    final_event: nil
  ]

  @doc false
  @spec validate!(keyword()) :: map()
  def validate!(opts) do
    opts = Keyword.merge(@defaults, opts)
    name = Keyword.get(opts, :name) || raise ArgumentError, "Crier needs a :name"
    unless is_atom(name), do: raise(ArgumentError, ":name must be an atom, got: #{inspect(name)}")

    target =
      case {opts[:handler], opts[:plug]} do
        {nil, nil} -> raise ArgumentError, "Crier needs a :handler or a :plug"
        {handler, nil} -> {:handler, module_and_opts!(handler, :handler)}
        {nil, plug} -> {:plug, plug |> module_and_opts!(:plug) |> init_plug!()}
        _ -> raise ArgumentError, "give Crier a :handler or a :plug, not both"
      end

    on_close = opts[:on_close] || if(elem(target, 0) == :plug, do: :exit, else: :message)

    unless on_close in [:message, :exit] do
      raise ArgumentError, ":on_close must be :message or :exit, got: #{inspect(on_close)}"
    end

    check_timers!(opts)

    native =
      opts
      |> Keyword.take(@native_keys)
      |> Map.new()
      |> Map.merge(%{ip: ip!(opts[:ip]), port: port!(opts[:port])})
      |> Map.merge(Crier.Options.TLS.native(opts))

    %{
      name: name,
      target: target,
      on_close: on_close,
      send_timeout: opts[:send_timeout],
      shutdown_timeout: opts[:shutdown_timeout],
      final_event: opts[:final_event],
      native: native
    }
  end

  # A zero heartbeat would write comment lines without pause, and a zero keepalive is refused
  # by the kernel: these are off with nil, else positive. A zero send or shutdown timeout is
  # allowed (it means "give up at once").
  defp check_timers!(opts) do
    for key <- [:heartbeat, :tcp_keepalive, :tcp_user_timeout, :write_queue_bytes],
        Keyword.has_key?(opts, key),
        value = opts[key],
        not (is_nil(value) or (is_integer(value) and value > 0)) do
      raise ArgumentError,
            "#{inspect(key)} must be a positive integer or nil, got: #{inspect(value)}"
    end

    for key <- [:send_timeout, :shutdown_timeout],
        value = opts[key],
        not (is_integer(value) and value >= 0) do
      raise ArgumentError,
            "#{inspect(key)} must be a non-negative integer, got: #{inspect(value)}"
    end

    :ok
  end

  defp module_and_opts!({module, handler_opts}, _key) when is_atom(module),
    do: {module, handler_opts}

  defp module_and_opts!(module, _key) when is_atom(module), do: {module, []}

  defp module_and_opts!(other, key),
    do:
      raise(
        ArgumentError,
        "#{inspect(key)} must be a module or {module, opts}, got: #{inspect(other)}"
      )

  # A plug's opts go through init/1 once, when the server starts, as Cowboy and Bandit do.
  defp init_plug!({plug, plug_opts}) do
    unless Code.ensure_loaded?(plug) and function_exported?(plug, :init, 1) do
      raise ArgumentError, ":plug must be a module with init/1 and call/2, got: #{inspect(plug)}"
    end

    {plug, plug.init(plug_opts)}
  end

  defp port!(port) when is_integer(port) and port in 0..65_535, do: port
  defp port!(port), do: raise(ArgumentError, ":port must be in 0..65535, got: #{inspect(port)}")

  defp ip!(ip) when is_tuple(ip), do: ip

  defp ip!(ip) when is_binary(ip) do
    case :inet.parse_address(String.to_charlist(ip)) do
      {:ok, parsed} -> parsed
      {:error, _} -> raise ArgumentError, ":ip must be an IP address, got: #{inspect(ip)}"
    end
  end

  defp ip!(ip), do: raise(ArgumentError, ":ip must be an IP address, got: #{inspect(ip)}")
end
