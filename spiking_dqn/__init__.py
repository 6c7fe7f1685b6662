"""spiking-dqn: IIR-SNN spiking networks trained down to one timestep, for DQN and classification."""
from spiking_dqn.convert import calibrate, convert, equalize, fuse_bn
from spiking_dqn.energy import EnergyReport, energy_report
from spiking_dqn.iir import DEFAULT_SCHEDULE, parse_schedule, run_stages, stages_to
from spiking_dqn.network import Residual, SpikingNetwork, clamp_after_step, recording
from spiking_dqn.neuron import IIRNeuron

__all__ = [
           "DEFAULT_SCHEDULE",
           "EnergyReport",
           "IIRNeuron",
           "Residual",
           "SpikingNetwork",
           "calibrate",
           "clamp_after_step",
           "convert",
           "energy_report",
           "equalize",
           "fuse_bn",
           "parse_schedule",
           "recording",
           "run_stages",
           "stages_to",
]
