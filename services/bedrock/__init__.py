"""AWS Bedrock Runtime through boto3's Converse API, for the LLM elements.

Contract: `BedrockService` (`from services.bedrock import BedrockService`) implements
`engine.ports.LlmService`; `ServiceHub.bedrock` builds one per hub, so one per process.
Importing this package loads boto3 but creates no client and needs no credentials. One concept
per module, each with its own contract:
- `service`: `BedrockService` — `generate_text`, `converse_tool`, `close`;
- `client`: the boto3 client — region, credentials, endpoint, retries, timeouts, pool size;
- `workers`: the dedicated thread pool every blocking boto3 call runs in, and the loop ↔ thread
  hand-over that never makes the loop wait;
- `streaming`: an open stream shared by its reading thread and the loop; hang-up on cancel;
- `replies`: Converse answers (untyped boto3 dicts) read into `engine.llm` types;
- `errors`: botocore failures → `engine.errors` types with a stable `error_type`, secrets masked.
"""

from services.bedrock.service import BedrockService

__all__ = ["BedrockService"]
