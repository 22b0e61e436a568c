"""Raw PhysioNet files and MEDS datasets to modality tables (data flows: data -> models -> training -> evaluation -> reporting)."""
