# `make demo`: the SSE clock on 127.0.0.1:$PORT (default 4000).
Code.require_file("demo_handler.ex", __DIR__)

port = String.to_integer(System.get_env("PORT", "4000"))
server = Crier.DemoServer

{:ok, _} =
  Supervisor.start_link(
    [{Crier, name: server, port: port, handler: {Crier.Demo, server: server}}],
    strategy: :one_for_one
  )

Crier.Demo.start_ticker(server)
IO.puts("Crier demo on http://127.0.0.1:#{Crier.port(server)}/ (Ctrl-C twice to stop)")

# The supervisor is linked to this script's process: keep it alive.
Process.sleep(:infinity)
