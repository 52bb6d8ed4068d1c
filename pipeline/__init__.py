"""otelpipe runtime core: data model, component contracts, graph, service and every network edge."""

__version__ = "0.1.0"
