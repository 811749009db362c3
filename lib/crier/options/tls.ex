defmodule Crier.Options.TLS do
  @moduledoc false
  # The TLS options of `Crier.start_link/1`, turned into what the NIF reads: the certificate
  # chain and key as PEM binaries (`tls_cert`, `tls_key`) and the ALPN list (`alpn`). Files
  # are read here; DER from Elixir (`:public_key` gives it) is PEM-encoded here. Whether the
  # certificate and key are sound, and belong together, is decided in Rust (rustls), which
  # answers `{:error, {:tls, why}}` from `start_link`.

  @keys [:certfile, :keyfile, :cert, :key, :alpn]
  @alpn ["h2", "http/1.1"]
  # The PEM labels of the key types `:ssl`'s `:key` option names (RFC 7468).
  @key_labels %{
    RSAPrivateKey: "RSA PRIVATE KEY",
    ECPrivateKey: "EC PRIVATE KEY",
    PrivateKeyInfo: "PRIVATE KEY"
  }

  @doc false
  @spec keys() :: [atom()]
  def keys, do: @keys

  @doc false
  # The native options for `opts`: empty when none of the TLS keys is given.
  @spec native(keyword()) :: map()
  def native(opts) do
    cert = source!(opts, :certfile, :cert, &cert_pem!/1)
    key = source!(opts, :keyfile, :key, &key_pem!/1)

    case {cert, key} do
      {nil, nil} ->
        if opts[:alpn], do: raise(ArgumentError, ":alpn needs :certfile/:cert and :keyfile/:key")
        %{}

      {nil, _} ->
        raise ArgumentError, "TLS needs a certificate: give :certfile or :cert"

      {_, nil} ->
        raise ArgumentError, "TLS needs a private key: give :keyfile or :key"

      {cert, key} ->
        %{tls_cert: cert, tls_key: key, alpn: alpn!(opts[:alpn] || @alpn)}
    end
  end

  defp source!(opts, file_key, value_key, to_pem) do
    case {opts[file_key], opts[value_key]} do
      {nil, nil} ->
        nil

      {path, nil} when is_binary(path) ->
        case File.read(path) do
          {:ok, pem} ->
            pem

          {:error, why} ->
            raise ArgumentError,
                  "#{inspect(file_key)} #{inspect(path)} cannot be read: #{:file.format_error(why)}"
        end

      {nil, value} ->
        to_pem.(value)

      {path, nil} ->
        raise ArgumentError, "#{inspect(file_key)} must be a path, got: #{inspect(path)}"

      _ ->
        raise ArgumentError, "give #{inspect(file_key)} or #{inspect(value_key)}, not both"
    end
  end

  # PEM as is; DER, or a list of DER certificates (the chain, end-entity first), encoded.
  defp cert_pem!("-----BEGIN" <> _ = pem), do: pem
  defp cert_pem!(der) when is_binary(der), do: cert_pem!([der])

  defp cert_pem!([_ | _] = chain) do
    if Enum.all?(chain, &is_binary/1) do
      Enum.map_join(chain, &pem("CERTIFICATE", &1))
    else
      raise ArgumentError, ":cert must be PEM, DER or a list of DER, got: #{inspect(chain)}"
    end
  end

  defp cert_pem!(other),
    do: raise(ArgumentError, ":cert must be PEM, DER or a list of DER, got: #{inspect(other)}")

  # PEM as is, or `{type, der}` as `:ssl`'s `:key` option takes it.
  defp key_pem!("-----BEGIN" <> _ = pem), do: pem

  defp key_pem!({type, der}) when is_map_key(@key_labels, type) and is_binary(der),
    do: pem(@key_labels[type], der)

  defp key_pem!(_other),
    do:
      raise(
        ArgumentError,
        ":key must be PEM or {:RSAPrivateKey | :ECPrivateKey | :PrivateKeyInfo, der}"
      )

  # RFC 7468's textual encoding: the label, base64 in lines of 64, the label again.
  defp pem(label, der) do
    IO.iodata_to_binary([
      "-----BEGIN #{label}-----\n",
      der |> Base.encode64() |> lines(),
      "-----END #{label}-----\n"
    ])
  end

  defp lines(<<line::binary-size(64), rest::binary>>), do: [line, ?\n | lines(rest)]
  defp lines(""), do: []
  defp lines(last), do: [last, ?\n]

  defp alpn!(protocols) when is_list(protocols) and protocols != [] do
    for protocol <- protocols do
      unless protocol in @alpn do
        raise ArgumentError,
              ":alpn protocols are #{inspect(@alpn)}, got: #{inspect(protocol)}"
      end
    end

    protocols
  end

  defp alpn!(other),
    do:
      raise(
        ArgumentError,
        ":alpn must be a non-empty list of #{inspect(@alpn)}, got: #{inspect(other)}"
      )
end
