"""correo.sasl"""
