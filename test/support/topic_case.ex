defmodule Crier.Test.TopicCase do
  @moduledoc """
  The case template of the topic tests: each test gets its own server, answered by
  `Crier.Test.TopicHandler`, without heartbeats (so a stream carries only its events), with
  the options of its `@tag server_opts: [...]`. Aliases `Crier.Event` and the test helpers.
  """

  use ExUnit.CaseTemplate

  alias Crier.Test.{Server, TopicHandler}

  using do
    quote do
      alias Crier.Event
      alias Crier.Test.{SseClient, TopicHandler, Wait}
    end
  end

  setup context do
    Server.start!(context, heartbeat: nil, handler: {TopicHandler, test: self()})
  end
end
