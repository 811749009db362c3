# `make demo`: the SSE clock on 127.0.0.1:$PORT (default 4000). `HTTPS=1 make demo` serves it
# over TLS (HTTP/2 and HTTP/1.1) with a self-signed certificate for localhost made at start.
Code.require_file("demo_handler.ex", __DIR__)

port = String.to_integer(System.get_env("PORT", "4000"))
server = Crier.DemoServer

# A fresh self-signed certificate, as a browser would see a development server's: accept it
# once (or start Chromium with --ignore-certificate-errors).
tls =
  if System.get_env("HTTPS") in ["1", "true"] do
    dir = Path.join(System.tmp_dir!(), "crier-demo-#{System.os_time()}")
    File.mkdir_p!(dir)
    {certfile, keyfile} = {Path.join(dir, "cert.pem"), Path.join(dir, "key.pem")}

    {_, 0} =
      System.cmd(
        "openssl",
        ~w(req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30
           -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1
           -keyout #{keyfile} -out #{certfile}),
        stderr_to_stdout: true
      )

    [certfile: certfile, keyfile: keyfile]
  else
    []
  end

{:ok, _} =
  Supervisor.start_link(
    [{Crier, [name: server, port: port, handler: {Crier.Demo, server: server}] ++ tls}],
    strategy: :one_for_one
  )

Crier.Demo.start_ticker(server)
scheme = if tls == [], do: "http", else: "https"
IO.puts("Crier demo on #{scheme}://127.0.0.1:#{Crier.port(server)}/ (Ctrl-C twice to stop)")

# The supervisor is linked to this script's process: keep it alive.
Process.sleep(:infinity)
