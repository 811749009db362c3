defmodule Crier.Test.Cert do
  @moduledoc """
  A self-signed certificate for `localhost` and 127.0.0.1, made with OpenSSL in a directory
  of the test's own, as PEM files and as DER.
  """

  @doc "Makes a certificate and key; returns their paths, PEM and DER forms."
  @spec make!() :: %{
          dir: Path.t(),
          certfile: Path.t(),
          keyfile: Path.t(),
          cert_der: binary(),
          key: {atom(), binary()}
        }
  def make! do
    dir = Path.join(System.tmp_dir!(), "crier-cert-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    certfile = Path.join(dir, "cert.pem")
    keyfile = Path.join(dir, "key.pem")

    {_, 0} =
      System.cmd(
        "openssl",
        ~w(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2
           -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1
           -keyout #{keyfile} -out #{certfile}),
        stderr_to_stdout: true
      )

    {"CERTIFICATE", cert_der} = der(File.read!(certfile))
    {"PRIVATE KEY", key_der} = der(File.read!(keyfile))

    %{
      dir: dir,
      certfile: certfile,
      keyfile: keyfile,
      cert_der: cert_der,
      key: {:PrivateKeyInfo, key_der}
    }
  end

  # The label and the bytes of a PEM file's one block.
  defp der(pem) do
    [_, label, body] = Regex.run(~r/-----BEGIN ([A-Z ]+)-----\n(.*?)-----END/s, pem)
    {label, body |> String.replace("\n", "") |> Base.decode64!()}
  end
end
