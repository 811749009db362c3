defmodule Crier.Application do
  @moduledoc false
  # Starts the `:pg` scope that cluster broadcasts use. Servers themselves live in the
  # user's supervision tree.

  use Application

  @impl Application
  def start(_type, _args) do
    children = [%{id: :pg, start: {:pg, :start_link, [Crier.Cluster.scope()]}}]
    Supervisor.start_link(children, strategy: :one_for_one, name: Crier.Supervisor)
  end
end
