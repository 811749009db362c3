defmodule Crier.Native do
  @moduledoc false
  # The NIF stubs. Each function is replaced by its Rust version when `priv/native/libcrier_nif`
  # loads; names and arities must match the `#[rustler::nif]` functions exactly, or loading
  # fails. The tokio runtime is built during the load, with `:worker_threads` from the
  # `:crier` application env (0, the default, means one per online core).

  @on_load :load_nif

  @doc false
  def load_nif do
    path = :filename.join(:code.priv_dir(:crier), ~c"native/libcrier_nif")
    workers = Application.get_env(:crier, :worker_threads, 0)

    case :erlang.load_nif(path, %{worker_threads: workers}) do
      :ok ->
        :ok

      {:error, {reason, text}} ->
        require Logger
        Logger.error("Crier could not load its NIF (#{reason}): #{text}")
        {:error, reason}
    end
  end

  defp nif_error, do: :erlang.nif_error(:nif_not_loaded)

  def runtime_workers, do: nif_error()
  def server_start(_options, _listener, _relays), do: nif_error()
  def server_stop_listening(_server), do: nif_error()
  def relay_open, do: nif_error()
  def relay_bell(_relay), do: nif_error()
  def relay_take(_relay), do: nif_error()
  def server_port(_server), do: nif_error()
  def server_stats(_server), do: nif_error()
  def server_topic_subscribers(_server, _topic), do: nif_error()
  def server_broadcast(_server, _topic, _event), do: nif_error()
  def server_broadcast_sequenced(_server, _topic, _event, _epoch, _seq), do: nif_error()
  def server_start_epoch(_server, _epoch, _follows), do: nif_error()
  def server_set_replay(_server, _topic, _size), do: nif_error()
  def server_shutdown(_server, _final_event), do: nif_error()
  def encode_event(_event), do: nif_error()
  # Any of the NIFs above that take lists or binaries, on a dirty scheduler (Crier.Boundary).
  def dirty(_name, _args), do: nif_error()

  def conn_set_owner(_conn, _pid, _on_close), do: nif_error()
  def conn_send_chunked(_conn, _status, _headers, _sse), do: nif_error()
  def conn_send_resp(_conn, _status, _headers, _body), do: nif_error()
  def conn_send_head(_conn, _status, _headers, _length), do: nif_error()
  def conn_inform(_conn, _status, _headers), do: nif_error()
  def conn_chunk(_conn, _data), do: nif_error()
  def conn_finish(_conn), do: nif_error()
  def conn_close(_conn, _reason), do: nif_error()
  def conn_cancel_wait(_conn), do: nif_error()
  def conn_read_body(_conn, _max), do: nif_error()
  def conn_subscribe(_conn, _topics, _last_event_id), do: nif_error()
  def conn_unsubscribe(_conn, _topic), do: nif_error()
  def conn_response_started(_conn), do: nif_error()
end
