defmodule Crier.OptionsTest do
  @moduledoc """
  Server options, checked by one schema before anything starts: unknown keys and values of
  the wrong type or out of range raise `ArgumentError` naming the key, nothing is clamped,
  and the option docs in `Crier`'s moduledoc come from the same schema.
  """
  use ExUnit.Case, async: true

  alias Crier.Test.FunHandler

  @base [name: :crier_options_test, port: 0, handler: FunHandler]

  test "an unknown key raises, naming it, instead of starting with the default" do
    assert_raise ArgumentError, ~r/heartbeet/, fn -> Crier.child_spec(@base ++ [heartbeet: 5]) end
    assert_raise ArgumentError, ~r/heartbeet/, fn -> Crier.start_link(@base ++ [heartbeet: 5]) end
  end

  test "options must be a keyword list" do
    assert_raise ArgumentError, ~r/keyword list/, fn -> Crier.child_spec(%{name: :x}) end
    assert_raise ArgumentError, ~r/keyword list/, fn -> Crier.child_spec([:name]) end
  end

  test "every value of the wrong type raises before start_link returns, naming its key" do
    bad = [
      max_request_line: "8k",
      max_header_bytes: -1,
      max_headers: 0,
      max_body: 1.5,
      header_timeout: 0,
      keepalive_timeout: :forever,
      write_queue_bytes: 0,
      send_timeout: nil,
      heartbeat: 0,
      tcp_keepalive: "30s",
      tcp_user_timeout: -1,
      shutdown_timeout: -1,
      final_event: "bye",
      max_connections: 0,
      backlog: 0,
      replay: -1,
      on_close: :maybe,
      dispatchers: 0,
      port: 70_000,
      ip: :localhost
    ]

    for {key, value} <- bad do
      assert_raise ArgumentError, ~r/#{inspect(key)}/, fn ->
        Crier.start_link(@base ++ [{key, value}])
      end
    end

    refute Process.whereis(:crier_options_test)
  end

  test "an invalid final event is refused when the server starts, not when it stops" do
    assert_raise ArgumentError, ~r/id must not contain/, fn ->
      Crier.child_spec(@base ++ [final_event: %Crier.Event{id: "a\nb"}])
    end
  end

  test "the moduledoc lists every option with its default, from the schema" do
    {:docs_v1, _, :elixir, _, %{"en" => doc}, _, _} = Code.fetch_docs(Crier)

    for key <- ~w(name handler plug port ip on_close dispatchers max_request_line
                  max_header_bytes max_headers max_body header_timeout keepalive_timeout
                  write_queue_bytes send_timeout heartbeat tcp_keepalive tcp_user_timeout
                  shutdown_timeout final_event max_connections backlog replay) do
      assert doc =~ "`:#{key}`", "#{key} is not documented"
    end

    assert doc =~
             "`:max_headers` - header fields; more get 431. An integer in 1..4294967295. " <>
               "Default is `100`."
  end

  test "a server started with only the required options serves" do
    {_name, port} =
      FunHandler.start_server(fn conn -> Crier.Conn.send_resp(conn, 204, [], "") end)

    client = Crier.Test.RawClient.connect(port)
    :ok = Crier.Test.RawClient.get(client, "/")
    assert {:ok, _} = Crier.Test.RawClient.read_until(client, "204")
  end
end
