"""The code file of every registered harness model: MLflow runs it to build the pyfunc ("models from
code", so loading unpickles nothing). Copied into the model folder by harness.served_model; it needs
po-harness installed where the model is loaded."""
import mlflow

from harness.served_model import HarnessChatModel

mlflow.models.set_model(HarnessChatModel())
