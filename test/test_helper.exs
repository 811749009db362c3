# Tests that need Plug run only when it is loaded (CRIER_PLUG_PATH, see README).
plug_loaded? = Code.ensure_loaded?(Plug.Conn)
exclude = if plug_loaded?, do: [], else: [:plug]
ExUnit.start(exclude: exclude, capture_log: true)
