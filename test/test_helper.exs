# Tests that need Plug run only when it is loaded (CRIER_PLUG_PATH, see README).
plug_loaded? = Code.ensure_loaded?(Plug.Conn)
# Telemetry tests likewise; the :no_telemetry ones check what happens without it.
telemetry? = Crier.Telemetry.enabled?()

exclude =
  if(plug_loaded?, do: [], else: [:plug]) ++
    if telemetry?, do: [:no_telemetry], else: [:telemetry]

# assert_receive waits for an event with a deadline, never asserts a time: the deadline is
# generous because CI shares two cores between the server, the clients and the VM.
ExUnit.start(exclude: exclude, capture_log: true, assert_receive_timeout: 5_000)
