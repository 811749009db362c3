defmodule Crier.TLSTest do
  @moduledoc """
  HTTPS: a server started with a certificate serves HTTP/1.1 over TLS to curl, tells the
  handler what the handshake agreed, and refuses certificates and keys that cannot be used
  with a clear error from `start_link`.
  """
  use ExUnit.Case, async: true

  alias Crier.Test.{Cert, FunHandler}

  setup_all do
    cert = Cert.make!()
    on_exit(fn -> File.rm_rf!(cert.dir) end)
    %{cert: cert}
  end

  defp sse_handler(test) do
    fn conn ->
      send(test, {:conn, conn})
      {:ok, conn} = Crier.Conn.send_chunked(conn, 200, [{"content-type", "text/event-stream"}])
      {:ok, _} = Crier.Conn.chunk(conn, "data: hello\n\n")
      :ok
    end
  end

  defp curl(port, cert, extra) do
    System.cmd(
      "curl",
      ["-sS", "--max-time", "10", "--cacert", cert.certfile] ++
        extra ++
        [
          "--resolve",
          "localhost:#{port}:127.0.0.1",
          "-w",
          "\n%{http_version}",
          "https://localhost:#{port}/events"
        ],
      stderr_to_stdout: true
    )
  end

  test "curl --http1.1 gets an SSE stream over TLS; the conn carries the session", %{cert: cert} do
    {_name, port} =
      FunHandler.start_server(sse_handler(self()),
        certfile: cert.certfile,
        keyfile: cert.keyfile,
        alpn: ["http/1.1"]
      )

    assert {"data: hello\n\n\n1.1", 0} = curl(port, cert, ["--http1.1"])
    assert_receive {:conn, conn}
    assert conn.version == :"HTTP/1.1"
    assert conn.tls[:protocol] == :"tlsv1.3"
    assert conn.tls[:negotiated_protocol] == "http/1.1"
    assert conn.tls[:sni_hostname] == "localhost"
    assert conn.tls[:cipher_suite] =~ ~r/^TLS13_/
  end

  test "DER and {type, der} work as in-memory cert and key", %{cert: cert} do
    {_name, port} =
      FunHandler.start_server(sse_handler(self()),
        cert: cert.cert_der,
        key: cert.key,
        alpn: ["http/1.1"]
      )

    assert {"data: hello\n\n\n1.1", 0} = curl(port, cert, ["--http1.1"])
  end

  test "a plain server's conn has no TLS data" do
    {_name, port} = FunHandler.start_server(sse_handler(self()))
    {_, 0} = System.cmd("curl", ["-sS", "--max-time", "10", "http://127.0.0.1:#{port}/"])
    assert_receive {:conn, %Crier.Conn{tls: nil}}
  end

  test "a key of another certificate fails start_link with the reason", %{cert: cert} do
    other = Cert.make!()
    on_exit(fn -> File.rm_rf!(other.dir) end)
    Process.flag(:trap_exit, true)

    assert {:error, {:tls, why}} =
             Crier.start_link(
               name: :crier_tls_mismatch,
               port: 0,
               handler: {FunHandler, fn _ -> :ok end},
               certfile: cert.certfile,
               keyfile: other.keyfile
             )

    assert why =~ "certificate and key were refused"
  end

  test "unusable certificates and keys are named", %{cert: cert} do
    Process.flag(:trap_exit, true)
    base = [name: :crier_tls_bad, port: 0, handler: {FunHandler, fn _ -> :ok end}]

    assert {:error, {:tls, "the certificate PEM is malformed" <> _}} =
             Crier.start_link(base ++ [cert: "-----BEGIN nothing\n", keyfile: cert.keyfile])

    assert {:error, {:tls, "the key PEM holds no private key"}} =
             Crier.start_link(base ++ [certfile: cert.certfile, key: File.read!(cert.certfile)])

    assert_raise ArgumentError, ~r/:certfile "\/nonexistent.pem" cannot be read/, fn ->
      Crier.start_link(base ++ [certfile: "/nonexistent.pem", keyfile: cert.keyfile])
    end

    assert_raise ArgumentError, ~r/needs a private key/, fn ->
      Crier.start_link(base ++ [certfile: cert.certfile])
    end

    assert_raise ArgumentError, ~r/:alpn must be a non-empty list/, fn ->
      Crier.start_link(base ++ [certfile: cert.certfile, keyfile: cert.keyfile, alpn: ["spdy"]])
    end
  end

  test "the Plug adapter reports HTTP/2 and the session over TLS, scheme https", %{cert: cert} do
    test = self()

    handler = fn conn ->
      alias Crier.PlugAdapter.Impl

      send(
        test,
        {:adapter, Impl.get_http_protocol(conn), Impl.get_ssl_data(conn), Impl.conn_fields(conn)}
      )

      Crier.Conn.send_resp(conn, 204, [], "")
    end

    {_name, port} =
      FunHandler.start_server(handler, certfile: cert.certfile, keyfile: cert.keyfile)

    {_, 0} = curl(port, cert, ["--http2"])
    assert_receive {:adapter, :"HTTP/2", ssl, fields}
    assert ssl[:negotiated_protocol] == "h2"
    assert ssl[:protocol] == :"tlsv1.3"
    assert fields[:scheme] == :https
    assert fields[:host] == "localhost"
    assert fields[:port] == port

    {_, 0} = curl(port, cert, ["--http1.1"])
    assert_receive {:adapter, :"HTTP/1.1", ssl, fields}
    assert ssl[:negotiated_protocol] == "http/1.1"
    assert fields[:scheme] == :https
  end
end
