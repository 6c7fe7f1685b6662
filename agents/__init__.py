"""DQN agents on stable-baselines3 with spiking Q-networks."""
