import Config

# Crier itself needs no configuration. The :plug suite checks that Crier.PlugAdapter writes
# Plug's reason phrases, custom ones included: Plug reads these when it compiles (a path
# dependency under CRIER_PLUG_PATH is recompiled when this file changes).
if config_env() == :test do
  config :plug, :statuses, %{
    498 => "Token Expired",
    799 => "Custom Status"
  }
end
