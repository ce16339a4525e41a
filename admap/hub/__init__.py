"""A run on the Hugging Face hub: `export_run` builds the folder an upload sends (each DPO subset a
dataset configuration of Parquet files, the map its own configuration, the figure and a dataset card);
`push_run` uploads it to a dataset repo. Reading a dataset from the hub is `admap.load.readers`'s."""

from admap.hub.export import ExportedConfig, RunExport, export_run
from admap.hub.upload import PushWhenWritten, push_run

__all__ = ["ExportedConfig", "PushWhenWritten", "RunExport", "export_run", "push_run"]
