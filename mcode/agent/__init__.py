"""The agent loop: model call -> tool calls -> results -> repeat, until the model stops."""
