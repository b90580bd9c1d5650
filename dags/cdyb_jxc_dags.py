"""Airflow DAGs of cdyb-jxc (成都医保药品进销存上传): every institution's init and daily DAGs.

Built from the deployment file ($CDYB_JXC_CONFIG, else $AIRFLOW_HOME/cdyb_jxc.yaml): cdyb_jxc_init__<code>
and cdyb_jxc_daily__<code> per institution. Without that file, the one institution of the CDYB_JXC_*
environment variables: cdyb_jxc_init and cdyb_jxc_daily. Written by ``cdyb-jxc scaffold``.
"""

from cdyb_jxc.workflows.factory import build_dags

globals().update(build_dags())
