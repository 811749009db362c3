defmodule Crier.Cluster do
  @moduledoc """
  Cluster fan-out over OTP's `:pg`.

  Every `Crier` server joins the `:pg` group named after it, in the `Crier.Cluster` scope.
  `Crier.broadcast(name, topic, event, cluster: true)` delivers locally, then sends one
  message per other node's server of the same name, which broadcasts there. Erlang
  distribution carries it; Crier adds no transport. Delivery across nodes has distribution's
  guarantees: ordered per sender and receiver, lost only if the nodes disconnect.
  """

  @scope __MODULE__

  @doc "The `:pg` scope Crier uses."
  @spec scope() :: atom()
  def scope, do: @scope

  @doc false
  @spec join(atom()) :: :ok
  def join(name), do: :pg.join(@scope, {Crier, name}, self())

  @doc """
  Sends `event` for `topic` to the server named `name` on every other connected node.
  """
  @spec remote_broadcast(atom(), String.t(), Crier.Event.t() | map()) :: :ok
  def remote_broadcast(name, topic, event) do
    for pid <- :pg.get_members(@scope, {Crier, name}), node(pid) != node() do
      send(pid, {:crier_cluster_broadcast, topic, event})
    end

    :ok
  end
end
