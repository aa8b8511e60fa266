"""Side effects: Bedrock, Aptos and the custom-code sandbox. Orchestration never does I/O itself."""
