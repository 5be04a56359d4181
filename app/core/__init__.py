"""The pure decision core: windows, forecasts, live check, ledger, policy.

Imports neither Faust, aiokafka nor prometheus-client (a test walks the imports).
The streaming service and the offline replay drive the same :class:`Engine`.
"""

from app.core.engine import (
    ALL_REGIONS,
    MODEL_PLANNER,
    Engine,
    EngineConfig,
    SkuState,
    StepResult,
    order_quantity,
    process_all,
    trigger_id,
)
from app.core.evidence import upper_tail
from app.core.forecast import Challenger, OnlineRegressor
from app.core.ledger import InFlight, Ledger
from app.core.policy import (
    OrderTerms,
    Overrides,
    Policy,
    PolicyError,
    Supplier,
    Thresholds,
    load_policy,
    parse_policy,
)

__all__ = [
    "ALL_REGIONS",
    "MODEL_PLANNER",
    "Challenger",
    "Engine",
    "EngineConfig",
    "InFlight",
    "Ledger",
    "OnlineRegressor",
    "OrderTerms",
    "Overrides",
    "Policy",
    "PolicyError",
    "SkuState",
    "StepResult",
    "Supplier",
    "Thresholds",
    "load_policy",
    "order_quantity",
    "parse_policy",
    "process_all",
    "trigger_id",
    "upper_tail",
]
